// Settings tab: every key of GET sdapi/v1/options, grouped in A1111's sections; Apply posts
// only what changed and shows a refused value next to its control.
import { get, post } from './api.js';
import { t, has } from './i18n.js';
import { state, emit } from './state.js';
import { h, toast, showFieldError, clearFieldErrors } from './ui.js';

const SECTIONS = [
  ['sd', ['sd_model_checkpoint', 'sd_vae', 'sd_vae_overrides_per_model_preferences', 'atelier_vae_tile_statistics', 'sd_checkpoints_limit', 'sd_checkpoint_cache',
    'sd_unet', 'CLIP_stop_at_last_layers', 'emphasis', 'comma_padding_backtrack', 'enable_batch_seeds', 'randn_source', 'tiling',
    'persistent_cond_cache', 'pad_cond_uncond', 'use_old_emphasis_implementation', 'use_old_scheduling', 'token_merging_ratio',
    'sdxl_crop_top', 'sdxl_crop_left']],
  ['sampler', ['eta_ancestral', 'eta_ddim', 'eta_noise_seed_delta', 's_churn', 's_tmin', 's_tmax', 's_noise', 's_min_uncond',
    'sigma_min', 'sigma_max', 'rho', 'k_sched_type', 'always_discard_next_to_last_sigma', 'sgm_noise_multiplier',
    'uni_pc_variant', 'uni_pc_skip_type', 'uni_pc_order', 'uni_pc_lower_order_final', 'beta_dist_alpha', 'beta_dist_beta']],
  ['previews', ['live_previews_enable', 'show_progress_every_n_steps', 'show_progress_type', 'live_preview_content']],
  ['img2img', ['img2img_fix_steps', 'initial_noise_multiplier', 'img2img_color_correction', 'img2img_background_color',
    'inpainting_mask_weight', 'upscaler_for_img2img', 'save_init_img']],
  ['saving', ['samples_save', 'samples_format', 'samples_filename_pattern', 'save_images_add_number', 'grid_save', 'grid_format',
    'grid_extended_filename', 'grid_only_if_multiple', 'grid_prevent_empty_spots', 'n_rows', 'return_grid', 'enable_pnginfo',
    'save_txt', 'jpeg_quality', 'export_for_4chan']],
  ['paths', ['outdir_samples', 'outdir_txt2img_samples', 'outdir_img2img_samples', 'outdir_extras_samples', 'outdir_grids',
    'outdir_txt2img_grids', 'outdir_img2img_grids', 'outdir_save', 'outdir_init_images', 'save_to_dirs', 'grid_save_to_dirs',
    'directories_filename_pattern', 'temp_dir']],
  ['infotext', ['add_model_hash_to_info', 'add_model_name_to_info', 'add_vae_hash_to_info', 'add_vae_name_to_info',
    'add_version_to_infotext', 'add_user_name_to_info', 'infotext_styles', 'infotext_skip_pasting', 'disable_weights_auto_swap']],
  ['face', ['face_restoration', 'face_restoration_model', 'code_former_weight']],
  ['api', ['api_enable_requests', 'api_forbid_local_requests', 'api_useragent']],
];
const READ_ONLY = new Set(['sd_checkpoint_hash']);
const CHOICES = {
  randn_source: ['GPU', 'CPU', 'NV'],
  emphasis: ['Original', 'No norm', 'None'],
  show_progress_type: ['Full', 'Approx NN', 'Approx cheap', 'TAESD'],
  live_preview_content: ['Combined', 'Prompt', 'Negative prompt'],
  infotext_styles: ['Ignore', 'Apply', 'Discard', 'Apply if any'],
  k_sched_type: ['Automatic', 'karras', 'exponential', 'polyexponential'],
  uni_pc_variant: ['bh1', 'bh2', 'vary_coeff'],
  uni_pc_skip_type: ['time_uniform', 'time_quadratic', 'logSNR'],
  face_restoration_model: ['CodeFormer', 'GFPGAN'],
  sd_unet: ['Automatic', 'None'],
  atelier_vae_tile_statistics: ['exact', 'tile'],
};

function label(key) { return has('opt.' + key) ? 'opt.' + key : null; }

export function createSettingsTab() {
  const panel = h('section', { id: 'tab_settings', class: 'panel', role: 'tabpanel' });
  const apply = h('button', { type: 'button', class: 'btn primary', id: 'settings_submit', i18n: 'settings.apply' });
  const reload = h('button', { type: 'button', class: 'btn', id: 'settings_reload_ui', i18n: 'settings.reload_ui' });
  const search = h('input', { type: 'search', id: 'settings_search', i18nPlaceholder: 'settings.search', i18nAria: 'settings.search' });
  const result = h('p', { class: 'status-text', id: 'settings_result', 'aria-live': 'polite' });
  const nav = h('div', { class: 'settings-nav', role: 'tablist', id: 'settings_nav' });
  const body = h('div', { class: 'settings-body', id: 'settings_body' });
  panel.append(h('div', { class: 'settings-top' }, apply, reload, search, result), h('div', { class: 'settings-layout' }, nav, body));

  let values = {};
  const controls = new Map();   // key → {el, read()}
  const sections = new Map();   // id → root
  let current = 'sd';

  function control(key, value) {
    const id = 'setting_' + key;
    let el, read;
    if (key === 'sd_model_checkpoint') {
      el = h('select', { id }, ...state.models.map((m) => h('option', { value: m.title, text: m.title })));
      if (!state.models.length) el.append(h('option', { value: value ?? '', text: value || '—' }));
      el.value = value ?? '';
      read = () => el.value;
    } else if (key === 'sd_vae') {
      el = h('select', { id }, ...['Automatic', 'None', ...state.vaes.map((v) => v.model_name)].map((v) => h('option', { value: v, text: v })));
      el.value = value ?? 'Automatic';
      read = () => el.value;
    } else if (CHOICES[key]) {
      const opts = CHOICES[key].includes(value) || value === null ? CHOICES[key] : [value, ...CHOICES[key]];
      el = h('select', { id }, ...opts.map((v) => h('option', { value: v, text: v })));
      el.value = value;
      read = () => el.value;
    } else if (typeof value === 'boolean') {
      el = h('input', { type: 'checkbox', id });
      el.checked = value;
      read = () => el.checked;
    } else if (typeof value === 'number') {
      el = h('input', { type: 'number', id, step: 'any', value });
      read = () => (el.value === '' ? null : Number(el.value));
    } else if (Array.isArray(value)) {
      el = h('input', { type: 'text', id, value: value.join(', ') });
      read = () => el.value.split(',').map((s) => s.trim()).filter(Boolean);
    } else if (key.endsWith('_color')) {
      el = h('input', { type: 'color', id, value: value || '#ffffff' });
      read = () => el.value;
    } else {
      el = h('input', { type: 'text', id, value: value ?? '' });
      read = () => (value === null && el.value === '' ? null : el.value);
    }
    if (READ_ONLY.has(key)) el.disabled = true;
    controls.set(key, { el, read });
    const l = label(key);
    const text = l ? h('span', { i18n: l }) : h('span', { text: key });
    const keyTag = h('code', { class: 'opt-key', text: key });
    if (el.type === 'checkbox') return h('label', { class: 'check setting', for: id, 'data-key': key }, el, h('span', { class: 'check-text' }, text, keyTag));
    return h('div', { class: 'field setting', 'data-key': key }, h('label', { for: id }, text, keyTag), el);
  }

  function build() {
    controls.clear();
    sections.clear();
    nav.replaceChildren();
    body.replaceChildren();
    const seen = new Set();
    const all = SECTIONS.map(([id, keys]) => [id, keys.filter((k) => k in values)]);
    for (const [, keys] of all) keys.forEach((k) => seen.add(k));
    const other = Object.keys(values).filter((k) => !seen.has(k)).sort();
    if (other.length) all.push(['other', other]);
    for (const [id, keys] of all) {
      if (!keys.length) continue;
      const root = h('div', { class: 'settings-section', id: 'settings_section_' + id },
        h('h2', { i18n: 'settings.sec.' + id }), ...keys.map((k) => control(k, values[k])));
      sections.set(id, root);
      body.append(root);
      const b = h('button', { type: 'button', role: 'tab', class: 'subtab', 'data-section': id, i18n: 'settings.sec.' + id });
      b.addEventListener('click', () => { search.value = ''; showSection(id); });
      nav.append(b);
    }
    showSection(sections.has(current) ? current : 'sd');
    if (search.value.trim()) filter();
  }

  function showSection(id) {
    current = id;
    for (const [k, root] of sections) {
      root.hidden = k !== id;
      for (const s of root.querySelectorAll('.setting')) s.hidden = false;
    }
    for (const b of nav.children) b.setAttribute('aria-selected', String(b.dataset.section === id));
  }

  function showSectionOf(key) {
    if (search.value.trim()) return;   // the search results stay on screen
    const s = [...sections.entries()].find(([, root]) => root.querySelector('#setting_' + CSS.escape(key)));
    if (s) showSection(s[0]);
  }

  function filter() {
    const q = search.value.trim().toLowerCase();
    if (!q) { showSection(current); return; }
    for (const root of sections.values()) {
      let any = false;
      for (const s of root.querySelectorAll('.setting')) {
        const hit = s.textContent.toLowerCase().includes(q);
        s.hidden = !hit;
        any = any || hit;
      }
      root.hidden = !any;
    }
    for (const b of nav.children) b.setAttribute('aria-selected', 'false');
  }

  async function load() {
    values = (await get('sdapi/v1/options')) || {};
    state.options = values;
    build();
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

  apply.addEventListener('click', async () => {
    clearFieldErrors(panel);
    const changed = {};
    for (const [key, c] of controls) {
      if (READ_ONLY.has(key)) continue;
      if (c.el.type === 'number' && c.el.value.trim() === '' && values[key] !== null) {
        showSectionOf(key);
        showFieldError(panel, c.el.id, t('settings.need_number'));
        return;
      }
      const v = c.read();
      if (!same(v, values[key])) changed[key] = v;
    }
    const n = Object.keys(changed).length;
    if (!n) { result.textContent = t('settings.nothing'); return; }
    apply.disabled = true;
    result.textContent = t('settings.saving');
    try {
      await post('sdapi/v1/options', changed);
      result.textContent = t('settings.saved', { n });
      await load();
      if ('sd_model_checkpoint' in changed || 'sd_vae' in changed) emit('options-changed', changed);
    } catch (e) {
      result.textContent = '';
      const key = Object.keys(changed).find((k) => e.message.includes(k));
      if (!key || !showFieldError(panel, 'setting_' + key, e.message)) toast(e.message, 'error', 10000);
      if (key) showSectionOf(key);
    } finally {
      apply.disabled = false;
    }
  });
  reload.addEventListener('click', () => location.reload());
  search.addEventListener('input', filter);

  let loaded = false;
  return {
    panel,
    show() { if (!loaded) { loaded = true; load().catch((e) => { loaded = false; toast(e.message, 'error'); }); } },
    reload: load,
  };
}
