// The txt2img and img2img tabs share this: prompts with token counters, the generation
// settings, Generate/Interrupt/Skip, live progress with preview, and the result gallery.
import { get, post } from './api.js';
import { t, onLangChange } from './i18n.js';
import { state, sendTo, on } from './state.js';
import {
  h, slider, select, setOptions, checkbox, debounce, dataURL, formatSeconds, toast,
  showFieldError, clearFieldErrors,
} from './ui.js';
import { hasCheckpoint } from './models.js';
import { parseInfotext, splitSampler } from './infotext.js';
import { NETWORK_TYPES, createNetworkPane } from './networks.js';
import { createControlNetPanel } from './controlnet.js';

const DEFAULT_SAMPLER = 'DPM++ 2M';

function promptBox(elemId, counterId, i18n, placeholder) {
  const input = h('textarea', { id: elemId, rows: 3, i18nPlaceholder: placeholder, spellcheck: 'false' });
  const counter = h('span', { class: 'token-counter', id: counterId, i18nTitle: 'gen.token_counter_title', text: '0/75' });
  const root = h('div', { class: 'field prompt' },
    h('div', { class: 'prompt-head' }, h('label', { for: elemId, i18n }), counter), input);
  let seq = 0;
  const update = debounce(async () => {
    const mine = ++seq;
    try {
      const r = await post('internal/token-count', { prompt: input.value });
      if (mine !== seq) return;
      counter.textContent = `${r.tokens}/${r.max}`;
      counter.classList.toggle('over', r.chunks > 1);
      counter.hidden = false;
    } catch {
      counter.hidden = true;
    }
  }, 250);
  input.addEventListener('input', update);
  return { root, input, counter, update };
}

function schedulerOptions() {
  return state.schedulers.map((s) => ({ value: s.name, label: s.label || s.name }));
}

function findOption(sel, value) {
  if (value === undefined || value === null) return null;
  const v = String(value).toLowerCase();
  return [...sel.options].find((o) => o.value.toLowerCase() === v || o.textContent.toLowerCase() === v) || null;
}

/**
 * kind: 'txt2img' | 'img2img'. ext (img2img): {input: Node, extra(settingsCol), collect(): request fields,
 * fieldIds: {field: controlId}, setParameters(p), denoise: true}
 */
export function createGenerationTab(kind, ext = {}) {
  const id = (s) => `${kind}_${s}`;
  const panel = h('section', { id: 'tab_' + kind, class: 'panel gen', role: 'tabpanel' });

  // ── prompts and the action column ──────────────────────────────────────────────────────────
  const prompt = promptBox(id('prompt'), id('token_counter'), 'gen.prompt', 'gen.prompt_placeholder');
  const neg = promptBox(id('neg_prompt'), id('negative_token_counter'), 'gen.negative_prompt', 'gen.negative_placeholder');
  let activePrompt = prompt.input;
  prompt.input.addEventListener('focus', () => { activePrompt = prompt.input; });
  neg.input.addEventListener('focus', () => { activePrompt = neg.input; });

  const generateBtn = h('button', { type: 'button', id: id('generate'), class: 'btn primary generate', i18n: 'gen.generate' });
  const interruptBtn = h('button', { type: 'button', id: id('interrupt'), class: 'btn generate-alt', i18n: 'gen.interrupt', hidden: true });
  const skipBtn = h('button', { type: 'button', id: id('skip'), class: 'btn generate-alt', i18n: 'gen.skip', hidden: true });
  const pasteBtn = h('button', { type: 'button', id: id('paste'), class: 'btn tool', i18nTitle: 'gen.paste_title', i18nAria: 'gen.paste_title', text: '↙️' });
  const clearBtn = h('button', { type: 'button', id: id('clear_prompt'), class: 'btn tool', i18nTitle: 'gen.clear_title', i18nAria: 'gen.clear_title', text: '🗑️' });

  panel.append(h('div', { class: 'gen-top' },
    h('div', { class: 'prompts' }, prompt.root, neg.root),
    h('div', { class: 'actions' },
      h('div', { class: 'generate-box' }, generateBtn, interruptBtn, skipBtn),
      h('div', { class: 'tool-row' }, pasteBtn, clearBtn))));

  // ── settings ───────────────────────────────────────────────────────────────────────────────
  const samplerNames = state.samplers.map((s) => s.name);
  const sampler = select({ id: id('sampling'), i18n: 'gen.sampler', options: samplerNames,
    value: samplerNames.includes(DEFAULT_SAMPLER) ? DEFAULT_SAMPLER : samplerNames[0] });
  const scheduler = select({ id: id('scheduler'), i18n: 'gen.scheduler', options: schedulerOptions(), value: 'automatic' });
  const steps = slider({ id: id('steps'), i18n: 'gen.steps', min: 1, max: 150, hardMax: 500, value: 20 });
  const width = slider({ id: id('width'), i18n: 'gen.width', min: 64, max: 2048, step: 8, value: 512 });
  const height = slider({ id: id('height'), i18n: 'gen.height', min: 64, max: 2048, step: 8, value: 512 });
  const swap = h('button', { type: 'button', class: 'btn tool', id: id('res_switch_btn'), i18nTitle: 'gen.swap_title', i18nAria: 'gen.swap_title', text: '⇅' });
  const batchCount = slider({ id: id('batch_count'), i18n: 'gen.batch_count', min: 1, max: 100, value: 1 });
  const batchSize = slider({ id: id('batch_size'), i18n: 'gen.batch_size', min: 1, max: 8, value: 1 });
  const cfg = slider({ id: id('cfg_scale'), i18n: 'gen.cfg_scale', min: 1, max: 30, step: 0.5, value: 7 });
  const seedInput = h('input', { type: 'number', id: id('seed'), value: -1, step: 1, min: -1 });
  const randomSeed = h('button', { type: 'button', class: 'btn tool', id: id('random_seed'), i18nTitle: 'gen.random_seed', i18nAria: 'gen.random_seed', text: '🎲' });
  const reuseSeed = h('button', { type: 'button', class: 'btn tool', id: id('reuse_seed'), i18nTitle: 'gen.reuse_seed', i18nAria: 'gen.reuse_seed', text: '♻️' });
  const seedRow = h('div', { class: 'field seed' },
    h('label', { for: id('seed'), i18n: 'gen.seed' }),
    h('div', { class: 'inline' }, seedInput, randomSeed, reuseSeed));

  const settings = h('div', { class: 'settings-pane', id: id('settings') });
  if (ext.input) settings.append(ext.input);
  if (ext.beforeSampling) settings.append(ext.beforeSampling);
  settings.append(
    h('div', { class: 'group' }, h('div', { class: 'row two' }, sampler.root, scheduler.root), steps.root),
    h('div', { class: 'group' },
      h('div', { class: 'row size' }, h('div', { class: 'col' }, width.root, height.root), swap),
      h('div', { class: 'row two' }, batchCount.root, batchSize.root)),
    h('div', { class: 'group' }, cfg.root, ext.afterCfg || null, seedRow));

  // hires. fix (txt2img): the API names what the engine cannot do yet
  let hires = null;
  if (kind === 'txt2img') {
    const enable = checkbox({ id: 'txt2img_enable_hr', i18n: 'gen.hires' });
    const upscaler = select({ id: 'txt2img_hr_upscaler', i18n: 'gen.hr_upscaler', options: hiresUpscalers(), value: 'Latent' });
    const hrSteps = slider({ id: 'txt2img_hires_steps', i18n: 'gen.hr_steps', min: 0, max: 150, value: 0 });
    const hrDenoise = slider({ id: 'txt2img_denoising_strength', i18n: 'gen.denoising', min: 0, max: 1, step: 0.01, value: 0.7 });
    const hrScale = slider({ id: 'txt2img_hr_scale', i18n: 'gen.hr_scale', min: 1, max: 4, step: 0.05, value: 2 });
    const body = h('div', { class: 'hires-body', id: 'txt2img_hires_body', hidden: true },
      h('div', { class: 'row two' }, upscaler.root, hrSteps.root), h('div', { class: 'row two' }, hrDenoise.root, hrScale.root));
    enable.input.addEventListener('change', () => { body.hidden = !enable.input.checked; });
    hires = { enable, upscaler, hrSteps, hrDenoise, hrScale, body, sync: () => { body.hidden = !enable.input.checked; } };
    settings.append(h('div', { class: 'group' }, enable.root, body));
  }
  const controlnet = createControlNetPanel(kind);
  settings.append(controlnet.root);

  // ── left column: Generation | extra network tabs ───────────────────────────────────────────
  const subtabs = h('div', { class: 'subtabs', role: 'tablist', id: id('subtabs') });
  const panes = new Map([['generation', { root: settings, show() {} }]]);
  for (const n of NETWORK_TYPES) panes.set(n.id, createNetworkPane(kind, n.id, () => activePrompt));
  const left = h('div', { class: 'left-col' }, subtabs);
  const labels = { generation: 'gen.generation', ...Object.fromEntries(NETWORK_TYPES.map((n) => [n.id, n.i18n])) };
  for (const [pid, pane] of panes) {
    const b = h('button', { type: 'button', role: 'tab', class: 'subtab', id: `${id(pid)}_tab`, 'data-pane': pid, i18n: labels[pid] });
    b.addEventListener('click', () => showPane(pid));
    subtabs.append(b);
    pane.root.hidden = pid !== 'generation';
    left.append(pane.root);
  }
  function showPane(pid) {
    for (const [k, pane] of panes) {
      pane.root.hidden = k !== pid;
      subtabs.querySelector(`[data-pane="${k}"]`).setAttribute('aria-selected', String(k === pid));
    }
    panes.get(pid).show();
  }
  showPane('generation');

  // ── results ────────────────────────────────────────────────────────────────────────────────
  const progressFill = h('div', { class: 'fill' });
  const progressText = h('span', { class: 'progress-text', id: id('progress_text') });
  const progress = h('div', { class: 'progress', id: id('progress'), role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', hidden: true },
    h('div', { class: 'bar' }, progressFill), progressText);
  const preview = h('img', { class: 'live-preview', id: id('live_preview'), alt: '', hidden: true });
  const mainImg = h('img', { class: 'result-image', id: id('result_image'), alt: '', hidden: true });
  const placeholder = h('div', { class: 'gallery-empty', 'aria-hidden': 'true' }, h('span', { text: '🖼️' }));
  const main = h('div', { class: 'gallery-main' }, placeholder, mainImg, preview);
  const thumbs = h('div', { class: 'thumbs', id: id('thumbs') });
  const gallery = h('div', { class: 'gallery', id: id('gallery') }, progress, main, thumbs);
  const saveLink = h('a', { class: 'btn tool', id: id('save'), i18nTitle: 'gen.save', i18nAria: 'gen.save', text: '💾', download: 'atelier.png', href: '#', role: 'button' });
  const toImg2img = h('button', { type: 'button', class: 'btn', id: id('send_to_img2img'), i18n: 'gen.send_img2img' });
  const toInpaint = h('button', { type: 'button', class: 'btn', id: id('send_to_inpaint'), i18n: 'gen.send_inpaint' });
  const toExtras = h('button', { type: 'button', class: 'btn', id: id('send_to_extras'), i18n: 'gen.send_extras' });
  const resultButtons = h('div', { class: 'result-buttons', hidden: true }, saveLink, toImg2img, toInpaint, toExtras);
  const errorBox = h('div', { class: 'error-box', id: id('error'), role: 'alert', hidden: true });
  const infotext = h('pre', { class: 'infotext', id: `html_info_${kind}`, tabindex: '0' });
  const results = h('div', { class: 'results', id: id('results') }, gallery, resultButtons, errorBox, infotext);

  panel.append(h('div', { class: 'gen-body' }, left, results));

  // ── behaviour ──────────────────────────────────────────────────────────────────────────────
  let items = [];       // [{src, infotext, seed}]
  let selected = -1;
  let running = false;

  function select_(i) {
    selected = i;
    const it = items[i];
    mainImg.src = it.src;
    mainImg.hidden = false;
    placeholder.hidden = true;
    infotext.textContent = it.infotext;
    saveLink.href = it.src;
    saveLink.download = `${it.seed ?? 'atelier'}.png`;
    for (const [j, th] of [...thumbs.children].entries()) th.setAttribute('aria-current', String(j === i));
  }

  function showResult(res) {
    let info = {};
    try { info = typeof res.info === 'string' ? JSON.parse(res.info) : (res.info || {}); } catch { /* keep empty */ }
    const texts = info.infotexts || [];
    const seeds = info.all_seeds || [info.seed];
    const first = info.index_of_first_image || 0;
    items = (res.images || []).map((b64, i) => ({
      src: dataURL(b64),
      infotext: texts[i] ?? texts[0] ?? '',
      seed: i < first ? info.seed : seeds[i - first] ?? info.seed,
    }));
    thumbs.replaceChildren(...(items.length > 1 ? items.map((it, i) => h('button', { type: 'button', class: 'thumb', on: { click: () => select_(i) } },
      h('img', { src: it.src, alt: t('gen.image_n', { n: i + 1 }) }))) : []));
    resultButtons.hidden = !items.length;
    if (items.length) select_(0); else { mainImg.hidden = true; placeholder.hidden = false; infotext.textContent = ''; }
  }

  function showError(message) {
    errorBox.replaceChildren(h('strong', { i18n: 'gen.error' }), ' ', message);
    errorBox.hidden = false;
  }

  const fieldIds = {
    prompt: id('prompt'), negative_prompt: id('neg_prompt'), sampler_name: id('sampling'), sampler_index: id('sampling'),
    scheduler: id('scheduler'), steps: id('steps'), cfg_scale: id('cfg_scale'), width: id('width'), height: id('height'),
    seed: id('seed'), n_iter: id('batch_count'), batch_size: id('batch_size'),
    hr_upscaler: 'txt2img_hr_upscaler', hr_scale: 'txt2img_hr_scale', hr_second_pass_steps: 'txt2img_hires_steps',
    enable_hr: 'txt2img_enable_hr', denoising_strength: id('denoising_strength'),
  };

  function reportError(e) {
    showError(e.message);
    const control = controlnet.fieldFor(e.message) || (e.field && ((ext.fieldIds && ext.fieldIds[e.field]) || fieldIds[e.field]));
    if (control) showFieldError(panel, control, e.message);
  }

  function params() {
    const p = {
      prompt: prompt.input.value,
      negative_prompt: neg.input.value,
      sampler_name: sampler.input.value,
      scheduler: scheduler.input.value,
      steps: Math.round(steps.value),
      cfg_scale: cfg.value,
      width: Math.round(width.value),
      height: Math.round(height.value),
      seed: seedInput.value === '' ? -1 : Math.round(Number(seedInput.value)),
      n_iter: Math.round(batchCount.value),
      batch_size: Math.round(batchSize.value),
      send_images: true,
      save_images: true,
    };
    if (hires && hires.enable.input.checked) {
      Object.assign(p, {
        enable_hr: true, hr_upscaler: hires.upscaler.input.value, hr_second_pass_steps: Math.round(hires.hrSteps.value),
        denoising_strength: hires.hrDenoise.value, hr_scale: hires.hrScale.value,
      });
    }
    return p;
  }

  function setRunning(on_) {
    running = on_;
    state.busy = on_;
    generateBtn.hidden = on_;
    interruptBtn.hidden = !on_;
    skipBtn.hidden = !on_;
    interruptBtn.disabled = false;
    skipBtn.disabled = false;
  }

  function startProgress() {
    let stopped = false;
    let timer = null;
    progress.hidden = false;
    progressFill.style.width = '0%';
    progressText.textContent = t('progress.waiting');
    const tick = async () => {
      if (stopped) return;
      try {
        const p = await get('sdapi/v1/progress?skip_current_image=false');
        if (stopped) return;
        const s = p.state || {};
        if (s.job_count > 0) {
          const pct = Math.max(0, Math.min(100, Math.round((p.progress || 0) * 100)));
          progressFill.style.width = pct + '%';
          progress.setAttribute('aria-valuenow', String(pct));
          let text = t('progress.status', { pct, eta: formatSeconds(p.eta_relative), step: s.sampling_step, steps: s.sampling_steps });
          if (s.job_count > 1) text += ' · ' + t('progress.batch', { n: Math.min(s.job_no + 1, s.job_count), total: s.job_count });
          if (s.interrupted) text = t('progress.interrupting');
          progressText.textContent = text;
          document.title = `[${pct}%] ${t('app.title')}`;
          if (p.current_image) {
            preview.src = dataURL(p.current_image);
            preview.hidden = false;
            placeholder.hidden = true;
            mainImg.hidden = true;
          }
        }
      } catch { /* keep polling; the generation request reports errors */ }
      if (!stopped) timer = setTimeout(tick, 400);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
      progress.hidden = true;
      preview.hidden = true;
      document.title = t('app.title');
    };
  }

  async function generate() {
    if (running) return;
    clearFieldErrors(panel);
    errorBox.hidden = true;
    if (!hasCheckpoint()) {
      showError(t('models.none_short', { dir: state.flags.ckpt_dir || 'models/Stable-diffusion' }));
      return;
    }
    let body;
    try {
      body = { ...params(), ...(ext.collect ? await ext.collect() : {}) };
      const cn = controlnet.collect();
      if (cn) body.alwayson_scripts = { ...(body.alwayson_scripts || {}), ...cn };
    } catch (e) {
      reportError(e);
      return;
    }
    setRunning(true);
    const stop = startProgress();
    try {
      const res = await post(`sdapi/v1/${kind}`, body);
      showResult(res);
    } catch (e) {
      reportError(e);
      if (!items.length) { mainImg.hidden = true; placeholder.hidden = false; }
      else { mainImg.hidden = false; }
    } finally {
      stop();
      setRunning(false);
    }
  }

  function setParameters(p) {
    if (!p) return;
    if ('Prompt' in p) prompt.input.value = p.Prompt ?? '';
    if ('Negative prompt' in p) neg.input.value = p['Negative prompt'] ?? '';
    if (p.Steps) steps.value = Number(p.Steps);
    if (p.Sampler) {
      const { sampler: name, schedule } = splitSampler(p.Sampler);
      const o = findOption(sampler.input, name);
      if (o) sampler.input.value = o.value;
      if (schedule && !p['Schedule type']) { const so = findOption(scheduler.input, schedule); if (so) scheduler.input.value = so.value; }
    }
    if (p['Schedule type']) { const so = findOption(scheduler.input, p['Schedule type']); if (so) scheduler.input.value = so.value; }
    if (p['CFG scale']) cfg.value = Number(p['CFG scale']);
    if (p.Seed !== undefined && p.Seed !== '') seedInput.value = Number(p.Seed);
    if (p['Size-1']) width.value = Number(p['Size-1']);
    if (p['Size-2']) height.value = Number(p['Size-2']);
    if (p['Batch size']) batchSize.value = Number(p['Batch size']);
    if (hires) {
      const on_ = !!p['Hires upscale'] || (Number(p['Hires resize-1']) > 0);
      hires.enable.input.checked = on_;
      if (p['Hires upscale']) hires.hrScale.value = Number(p['Hires upscale']);
      if (p['Hires steps']) hires.hrSteps.value = Number(p['Hires steps']);
      if (p['Hires upscaler']) { const o = findOption(hires.upscaler.input, p['Hires upscaler']); if (o) hires.upscaler.input.value = o.value; }
      if (on_ && p['Denoising strength']) hires.hrDenoise.value = Number(p['Denoising strength']);
      hires.sync();
    }
    ext.setParameters?.(p);
    prompt.update();
    neg.update();
    save();
  }

  // remember every setting (the prompt survives a reload)
  const storageKey = 'atelier.params.' + kind;
  const persisted = () => [...settings.querySelectorAll('input[id], select[id], textarea[id]'), prompt.input, neg.input]
    .filter((el) => el.type !== 'file' && el.type !== 'range' && !el.closest('.no-persist'));
  const save = debounce(() => {
    const values = {};
    for (const el of persisted()) values[el.id] = el.type === 'checkbox' || el.type === 'radio' ? el.checked : el.value;
    try { localStorage.setItem(storageKey, JSON.stringify(values)); } catch { /* storage full or disabled */ }
  }, 200);
  function restore() {
    let values = null;
    try { values = JSON.parse(localStorage.getItem(storageKey) || 'null'); } catch { values = null; }
    if (!values) return;
    for (const el of persisted()) {
      if (!(el.id in values)) continue;
      const v = values[el.id];
      if (el.type === 'checkbox' || el.type === 'radio') el.checked = !!v;
      else if (el.tagName === 'SELECT') { if ([...el.options].some((o) => o.value === v)) el.value = v; }
      else el.value = v;
      el.dispatchEvent(new Event(el.type === 'checkbox' || el.type === 'radio' ? 'change' : 'input', { bubbles: true }));
    }
  }
  panel.addEventListener('input', save);
  panel.addEventListener('change', save);

  generateBtn.addEventListener('click', generate);
  interruptBtn.addEventListener('click', async () => {
    interruptBtn.disabled = true;
    skipBtn.disabled = true;
    progressText.textContent = t('progress.interrupting');
    try { await post('sdapi/v1/interrupt'); } catch (e) { toast(e.message, 'error'); interruptBtn.disabled = false; }
  });
  skipBtn.addEventListener('click', async () => {
    try { await post('sdapi/v1/skip'); } catch (e) { toast(e.message, 'error'); }
  });
  for (const ta of [prompt.input, neg.input]) {
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
    });
  }
  randomSeed.addEventListener('click', () => { seedInput.value = -1; save(); });
  reuseSeed.addEventListener('click', () => {
    const it = items[selected];
    if (it && it.seed !== undefined && it.seed !== null) { seedInput.value = it.seed; save(); } else toast(t('gen.no_seed_yet'), 'info', 3000);
  });
  swap.addEventListener('click', () => { const w = width.value; width.value = height.value; height.value = w; save(); });
  clearBtn.addEventListener('click', () => {
    if (!prompt.input.value && !neg.input.value) return;
    if (!confirm(t('gen.clear_confirm'))) return;
    prompt.input.value = ''; neg.input.value = '';
    prompt.update(); neg.update(); save();
  });
  pasteBtn.addEventListener('click', () => {
    const text = prompt.input.value;
    const p = parseInfotext(text);
    if (Object.keys(p).length <= 2) { toast(t('gen.paste_nothing'), 'info', 4000); return; }
    setParameters(p);
  });
  const sendImage = (target, mode) => {
    const it = items[selected];
    if (!it) return;
    sendTo(target, { image: it.src, parameters: parseInfotext(it.infotext), mode });
  };
  toImg2img.addEventListener('click', () => sendImage('img2img', 'img2img'));
  toInpaint.addEventListener('click', () => sendImage('img2img', 'inpaint'));
  toExtras.addEventListener('click', () => sendImage('extras'));
  mainImg.addEventListener('click', () => openLightbox(mainImg.src));
  on('upscalers', () => { if (hires) setOptions(hires.upscaler.input, hiresUpscalers()); });
  onLangChange(() => { if (!running) document.title = t('app.title'); });

  restore();
  prompt.update();
  neg.update();

  return {
    panel, generate, setParameters, prompt: prompt.input, negPrompt: neg.input, showPane,
    get running() { return running; },
    receive(payload) { if (payload?.parameters) setParameters(payload.parameters); },
    show() { prompt.update(); neg.update(); },
  };
}

function hiresUpscalers() {
  const latent = ['Latent', 'Latent (antialiased)', 'Latent (bicubic)', 'Latent (bicubic antialiased)', 'Latent (nearest)', 'Latent (nearest-exact)'];
  const names = state.upscalers.map((u) => u.name).filter((n) => n !== 'None');
  return [...latent, ...names];
}

export function openLightbox(src) {
  if (!src) return;
  const close = () => { box.remove(); document.removeEventListener('keydown', onKey); };
  const onKey = (e) => { if (e.key === 'Escape') close(); };
  const box = h('div', { class: 'lightbox', role: 'dialog', 'aria-modal': 'true', tabindex: '-1', on: { click: close } },
    h('img', { src, alt: '' }));
  document.body.append(box);
  document.addEventListener('keydown', onKey);
  box.focus();
}
