// Checkpoint and VAE selectors at the top of the page (A1111's quicksettings), the refresh
// buttons, and the "no checkpoint installed" banner that says how to add one.
import { get, post } from './api.js';
import { t } from './i18n.js';
import { state, emit } from './state.js';
import { h, setOptions, toast } from './ui.js';

const $ = (id) => document.getElementById(id);

export async function loadModels({ rescan = false } = {}) {
  if (rescan) await post('sdapi/v1/refresh-checkpoints');
  const [models, options] = await Promise.all([get('sdapi/v1/sd-models'), get('sdapi/v1/options')]);
  state.models = models || [];
  state.options = options || {};
  renderModels();
  emit('models', state.models);
  return state.models;
}

export async function loadVaes({ rescan = false } = {}) {
  if (rescan) await post('sdapi/v1/refresh-vae');
  try { state.vaes = (await get('sdapi/v1/sd-vae')) || []; } catch { state.vaes = []; }
  renderVaes();
}

function currentTitle() {
  const cur = state.options.sd_model_checkpoint || '';
  const m = state.models.find((x) => x.title === cur || x.model_name === cur || x.hash && cur.includes(x.hash));
  return m ? m.title : (state.models[0]?.title ?? '');
}

function renderModels() {
  const sel = $('sd_model_checkpoint');
  if (!state.models.length) {
    setOptions(sel, [{ value: '', i18n: 'top.no_checkpoint' }], '');
    sel.disabled = true;
  } else {
    setOptions(sel, state.models.map((m) => ({ value: m.title, label: m.title })), currentTitle());
    sel.disabled = false;
  }
  const banner = $('no_checkpoint');
  if (state.models.length) { banner.hidden = true; banner.replaceChildren(); return; }
  const dir = state.flags.ckpt_dir || 'models/Stable-diffusion';
  banner.replaceChildren(
    h('div', { class: 'banner-body' },
      h('strong', { i18n: 'models.none_title' }),
      h('p', { id: 'no_checkpoint_help', i18n: 'models.none_help', i18nArgs: { dir } }),
      h('code', { class: 'path', id: 'no_checkpoint_dir', text: dir })),
    h('button', { type: 'button', class: 'btn primary', id: 'no_checkpoint_refresh', i18n: 'models.refresh_now', on: { click: () => refreshCheckpoints() } }));
  banner.hidden = false;
}

function renderVaes() {
  const sel = $('sd_vae');
  const opts = [{ value: 'Automatic', i18n: 'top.vae_automatic' }, { value: 'None', i18n: 'top.vae_none' }]
    .concat(state.vaes.map((v) => ({ value: v.model_name, label: v.model_name })));
  setOptions(sel, opts, state.options.sd_vae || 'Automatic');
}

function status(key, kind = '') {
  const el = $('model_status');
  el.className = 'status-text ' + kind;
  if (key) { el.setAttribute('data-i18n', key); el.textContent = t(key); } else { el.removeAttribute('data-i18n'); el.textContent = ''; }
}

export async function refreshCheckpoints() {
  const btns = [$('refresh_sd_model_checkpoint'), $('no_checkpoint_refresh')].filter(Boolean);
  btns.forEach((b) => { b.disabled = true; });
  status('top.refreshing');
  try {
    const models = await loadModels({ rescan: true });
    status(models.length ? '' : 'top.still_none', models.length ? '' : 'warn');
    if (models.length) toast(t('models.found', { n: models.length }), 'ok', 3000);
  } catch (e) {
    status('');
    toast(e.message, 'error', 8000);
  } finally {
    btns.forEach((b) => { b.disabled = false; });
  }
}

export async function setCheckpoint(title) {
  const sel = $('sd_model_checkpoint');
  const before = currentTitle();
  sel.value = title;
  sel.disabled = true;
  status('top.loading_model');
  try {
    await post('sdapi/v1/options', { sd_model_checkpoint: title });
    state.options.sd_model_checkpoint = title;
    status('');
    emit('models', state.models);
  } catch (e) {
    sel.value = before;
    status('');
    toast(t('top.model_error', { message: e.message }), 'error', 10000);
  } finally {
    sel.disabled = !state.models.length;
  }
}

export function initModelControls() {
  $('sd_model_checkpoint').addEventListener('change', (e) => setCheckpoint(e.target.value));
  $('refresh_sd_model_checkpoint').addEventListener('click', () => refreshCheckpoints());
  $('sd_vae').addEventListener('change', async (e) => {
    const value = e.target.value;
    try {
      await post('sdapi/v1/options', { sd_vae: value });
      state.options.sd_vae = value;
    } catch (err) {
      toast(err.message, 'error', 8000);
      e.target.value = state.options.sd_vae || 'Automatic';
    }
  });
  $('refresh_sd_vae').addEventListener('click', () => loadVaes({ rescan: true }).catch((e) => toast(e.message, 'error')));
}

export function hasCheckpoint() { return state.models.length > 0; }
export function checkpointTitle() { return currentTitle(); }
