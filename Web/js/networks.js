// Extra networks: cards for checkpoints, LoRAs and textual-inversion embeddings. Clicking a
// LoRA card puts <lora:name:1> into the prompt last focused (clicking again takes it out); an
// embedding card puts its name; a checkpoint card switches the model.
import { get, post } from './api.js';
import { t } from './i18n.js';
import { state, on } from './state.js';
import { h, toast } from './ui.js';
import { setCheckpoint, loadModels } from './models.js';

export const NETWORK_TYPES = [
  { id: 'textual_inversion', i18n: 'networks.textual_inversion' },
  { id: 'checkpoints', i18n: 'networks.checkpoints' },
  { id: 'lora', i18n: 'networks.lora' },
];

/** Adds text to a prompt with A1111's separator (a space), or removes it when already there. */
export function togglePromptText(textarea, text) {
  const v = textarea.value;
  if (v.includes(text)) {
    textarea.value = v.replace(text, '').replace(/[ \t]{2,}/g, ' ').replace(/\s+,/g, ',').trim();
  } else {
    textarea.value = v + (v && !/\s$/.test(v) ? ' ' : '') + text;
  }
  textarea.dispatchEvent(new Event('input', { bubbles: true }));
}

function initials(name) {
  const parts = name.replace(/[_\-.]+/g, ' ').trim().split(/\s+/);
  return (parts[0]?.[0] || '?').toUpperCase() + (parts[1]?.[0] || parts[0]?.[1] || '').toUpperCase();
}

function hue(name) {
  let x = 0;
  for (const c of name) x = (x * 31 + c.codePointAt(0)) >>> 0;
  return x % 360;
}

async function fetchItems(type, rescan) {
  if (type === 'checkpoints') {
    if (rescan) await loadModels({ rescan: true });
    return state.models.map((m) => ({ name: m.model_name, title: m.title, detail: m.hash || '' }));
  }
  if (type === 'lora') {
    if (rescan) await post('sdapi/v1/refresh-loras');
    const list = (await get('sdapi/v1/loras')) || [];
    return list.map((l) => ({ name: l.name, title: l.alias && l.alias !== l.name ? l.alias : l.name, detail: l.path || '' }));
  }
  if (rescan) await post('sdapi/v1/refresh-embeddings');
  const emb = (await get('sdapi/v1/embeddings')) || {};
  return Object.keys(emb.loaded || {}).map((name) => ({ name, title: name, detail: emb.loaded[name]?.vectors ? `${emb.loaded[name].vectors} vec` : '' }));
}

/** One pane per network type; getPrompt() returns the textarea to insert into. */
export function createNetworkPane(kind, type, getPrompt) {
  const search = h('input', { type: 'search', id: `${kind}_${type}_search`, i18nPlaceholder: 'networks.search', i18nAria: 'networks.search' });
  const refresh = h('button', { type: 'button', class: 'btn', id: `${kind}_${type}_refresh`, i18n: 'networks.refresh' });
  const grid = h('div', { class: 'cards', id: `${kind}_${type}_cards` });
  const root = h('div', { class: 'network-pane', id: `${kind}_${type}_pane`, 'data-type': type },
    h('div', { class: 'network-head' }, search, refresh), grid);
  let items = [];
  let loaded = false;

  function emptyMessage() {
    const dir = type === 'lora' ? state.flags.lora_dir : type === 'checkpoints' ? state.flags.ckpt_dir : state.flags.embeddings_dir;
    return h('div', { class: 'empty' },
      h('p', { i18n: `networks.empty_${type}` }),
      dir ? h('code', { class: 'path', text: dir }) : null,
      h('p', { class: 'muted', i18n: 'networks.empty_hint' }));
  }

  function render() {
    const q = search.value.trim().toLowerCase();
    const shown = items.filter((i) => !q || i.title.toLowerCase().includes(q) || i.name.toLowerCase().includes(q));
    if (!items.length) { grid.replaceChildren(emptyMessage()); return; }
    const prompt = getPrompt();
    const current = state.options.sd_model_checkpoint;
    grid.replaceChildren(...shown.map((item) => {
      const text = type === 'lora' ? `<lora:${item.name}:1>` : item.name;
      const active = type === 'checkpoints' ? item.title === current : prompt?.value.includes(text);
      const card = h('button', {
        type: 'button', class: 'card' + (active ? ' active' : ''), 'data-name': item.name, title: item.detail || item.title,
        'aria-pressed': String(!!active),
        on: {
          click: async () => {
            if (type === 'checkpoints') { await setCheckpoint(item.title); render(); return; }
            const target = getPrompt();
            togglePromptText(target, text);
            target.focus();
            render();
          },
        },
      },
      h('span', { class: 'card-thumb', style: { background: `linear-gradient(135deg, hsl(${hue(item.name)} 55% 38%), hsl(${(hue(item.name) + 50) % 360} 60% 22%))` }, 'aria-hidden': 'true' }, initials(item.name)),
      h('span', { class: 'card-name', text: item.title }));
      return card;
    }));
    if (!shown.length) grid.append(h('p', { class: 'muted', i18n: 'networks.no_match' }));
  }

  async function load(rescan = false) {
    refresh.disabled = true;
    try {
      items = await fetchItems(type, rescan);
      loaded = true;
      render();
    } catch (e) {
      grid.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: e.message }));
    } finally {
      refresh.disabled = false;
    }
  }

  search.addEventListener('input', render);
  refresh.addEventListener('click', () => load(true).catch((e) => toast(e.message, 'error')));
  if (type === 'checkpoints') on('models', () => { if (loaded) load(false); });
  return { root, show: () => (loaded ? render() : load(false)), load, render };
}
