// A1111's infotext ("generation parameters") parser, as in the spec §8.2, for the paste
// button (↙️) and for sending results between tabs. PNG Info uses the server's parser.
const PARAM_RE = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
const SIZE_RE = /^(\d+)x(\d+)$/;

export function parseInfotext(text) {
  const result = {};
  if (!text || !text.trim()) return result;
  const lines = text.trim().split('\n');
  let last = lines[lines.length - 1];
  const matches = [...last.matchAll(PARAM_RE)];
  let body = lines;
  if (matches.length >= 3) body = lines.slice(0, -1); else last = '';
  let prompt = [], negative = [], inNeg = false;
  for (const line of body) {
    if (line.startsWith('Negative prompt:')) { inNeg = true; negative.push(line.slice(16).trim()); continue; }
    (inNeg ? negative : prompt).push(line);
  }
  result.Prompt = prompt.join('\n').trim();
  result['Negative prompt'] = negative.join('\n').trim();
  if (last) {
    for (const m of matches) {
      const key = m[1].trim();
      let value = m[2].trim();
      if (value.startsWith('"') && value.endsWith('"')) { try { value = JSON.parse(value); } catch { /* keep */ } }
      const size = SIZE_RE.exec(value);
      if (size) { result[key + '-1'] = size[1]; result[key + '-2'] = size[2]; } else result[key] = value;
    }
  }
  return result;
}

/** Legacy sampler names ("DPM++ 2M Karras") → {sampler, scheduler label}. */
export function splitSampler(name) {
  for (const sched of ['Karras', 'Exponential', 'Uniform']) {
    if (name && name.endsWith(' ' + sched)) return { sampler: name.slice(0, -sched.length - 1), schedule: sched };
  }
  return { sampler: name, schedule: null };
}
