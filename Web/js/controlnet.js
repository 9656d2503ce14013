// The ControlNet panel of txt2img / img2img (one unit, as the extension's first unit): enable,
// control image, preprocessor, model, weight, guidance start/end, control mode, resize mode,
// pixel perfect, canny thresholds, and a preview of the detected map (/controlnet/detect).
// The request carries it as alwayson_scripts.ControlNet.args[0], as the extension's UI does.
import { get, post } from './api.js';
import { t } from './i18n.js';
import { state } from './state.js';
import { h, slider, select, setOptions, checkbox, dropZone, fileToDataURL, dataURL, toast } from './ui.js';

const CONTROL_MODES = ['Balanced', 'My prompt is more important', 'ControlNet is more important'];
const RESIZE_MODES = ['Just Resize', 'Crop and Resize', 'Resize and Fill'];

export function createControlNetPanel(kind) {
  const id = (s) => `${kind}_controlnet_${s}`;
  let image = null;  // data URL of the control image

  const enable = checkbox({ id: id('enable'), i18n: 'cn.enable' });
  const preview = h('img', { id: id('image_preview'), class: 'cn-image', alt: '', hidden: true });
  const drop = dropZone({ id: id('image'), i18n: 'cn.drop_image', onFile: async (file) => {
    image = await fileToDataURL(file);
    preview.src = image;
    preview.hidden = false;
    if (!enable.input.checked) { enable.input.checked = true; sync(); }
  } });
  const clearImage = h('button', { type: 'button', class: 'btn tool', id: id('image_clear'), i18nTitle: 'cn.clear_image', i18nAria: 'cn.clear_image', text: '🗑️' });
  const module = select({ id: id('module'), i18n: 'cn.module', options: ['none', 'canny'], value: 'canny' });
  const model = select({ id: id('model'), i18n: 'cn.model', options: [] });
  const refresh = h('button', { type: 'button', class: 'btn tool', id: id('model_refresh'), i18nTitle: 'top.refresh', i18nAria: 'top.refresh', text: '🔄' });
  const noModels = h('p', { class: 'hint', id: id('no_models'), hidden: true });
  const weight = slider({ id: id('weight'), i18n: 'cn.weight', min: 0, max: 2, step: 0.05, value: 1 });
  const start = slider({ id: id('guidance_start'), i18n: 'cn.guidance_start', min: 0, max: 1, step: 0.01, value: 0 });
  const end = slider({ id: id('guidance_end'), i18n: 'cn.guidance_end', min: 0, max: 1, step: 0.01, value: 1 });
  const mode = select({ id: id('control_mode'), i18n: 'cn.control_mode',
    options: CONTROL_MODES.map((m, i) => ({ value: m, i18n: `cn.mode_${i}` })), value: CONTROL_MODES[0] });
  const resize = select({ id: id('resize_mode'), i18n: 'cn.resize_mode',
    options: RESIZE_MODES.map((m, i) => ({ value: m, i18n: `cn.resize_${i}` })), value: 'Crop and Resize' });
  const pixelPerfect = checkbox({ id: id('pixel_perfect'), i18n: 'cn.pixel_perfect', checked: true });
  const res = slider({ id: id('processor_res'), i18n: 'cn.processor_res', min: 64, max: 2048, step: 8, value: 512 });
  const low = slider({ id: id('threshold_a'), i18n: 'cn.low', min: 1, max: 255, value: 100 });
  const high = slider({ id: id('threshold_b'), i18n: 'cn.high', min: 1, max: 255, value: 200 });
  const detectBtn = h('button', { type: 'button', class: 'btn', id: id('detect'), i18n: 'cn.preview' });
  const detected = h('img', { id: id('detected'), class: 'cn-image', alt: '', hidden: true });
  const cannyBox = h('div', { class: 'cn-canny' }, res.root, h('div', { class: 'row two' }, low.root, high.root));

  const body = h('div', { class: 'cn-body', id: id('body') },
    h('div', { class: 'row cn-images' },
      h('div', { class: 'dropzone-wrap' }, drop.root, h('div', { class: 'inline' }, preview, clearImage)),
      h('div', { class: 'cn-detected' }, detectBtn, detected)),
    h('div', { class: 'row two' }, module.root, h('div', { class: 'field-with-tool' }, model.root, refresh)),
    noModels,
    weight.root,
    h('div', { class: 'row two' }, start.root, end.root),
    h('div', { class: 'row two' }, mode.root, resize.root),
    pixelPerfect.root,
    cannyBox);
  const root = h('details', { class: 'group cn', id: id('panel') },
    h('summary', { i18n: 'cn.title' }), enable.root, body);

  function sync() {
    cannyBox.hidden = module.input.value !== 'canny';
    res.root.hidden = pixelPerfect.input.checked;
  }
  module.input.addEventListener('change', sync);
  pixelPerfect.input.addEventListener('change', sync);
  clearImage.addEventListener('click', () => { image = null; preview.hidden = true; preview.removeAttribute('src'); });

  async function loadModels(rescan = false) {
    try {
      const r = await get('controlnet/model_list' + (rescan ? '?update=true' : ''));
      const list = r.model_list || [];
      setOptions(model.input, list);
      noModels.hidden = list.length > 0;
      noModels.textContent = t('cn.no_models', { dir: (state.flags.data_dir || 'data') + '/models/ControlNet' });
    } catch (e) {
      noModels.hidden = false;
      noModels.textContent = e.message;
    }
  }
  refresh.addEventListener('click', () => loadModels(true));
  root.addEventListener('toggle', () => { if (root.open && !model.input.options.length) loadModels(); });

  detectBtn.addEventListener('click', async () => {
    if (!image) { toast(t('cn.need_image'), 'info', 4000); return; }
    detectBtn.disabled = true;
    try {
      const r = await post('controlnet/detect', {
        controlnet_module: module.input.value, controlnet_input_images: [image.split(',', 2)[1]],
        controlnet_processor_res: Math.round(res.value), controlnet_threshold_a: low.value, controlnet_threshold_b: high.value,
      });
      detected.src = dataURL(r.images[0]);
      detected.hidden = false;
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      detectBtn.disabled = false;
    }
  });
  sync();

  const fieldIds = {
    image: drop.root.id, module: id('module'), model: id('model'), weight: id('weight'), guidance_start: id('guidance_start'),
    guidance_end: id('guidance_end'), control_mode: id('control_mode'), resize_mode: id('resize_mode'),
    processor_res: id('processor_res'), threshold_a: id('threshold_a'), threshold_b: id('threshold_b'),
  };

  return {
    root,
    /** The request's alwayson_scripts entry, or null when the unit is off. */
    collect() {
      if (!enable.input.checked) return null;
      const unit = {
        enabled: true, module: module.input.value, model: model.input.value || 'None', weight: weight.value,
        guidance_start: start.value, guidance_end: end.value, control_mode: mode.input.value, resize_mode: resize.input.value,
        pixel_perfect: pixelPerfect.input.checked, processor_res: Math.round(res.value), threshold_a: low.value, threshold_b: high.value,
      };
      if (image) unit.image = image.split(',', 2)[1];
      return { ControlNet: { args: [unit] } };
    },
    /** The control that an API error about `…controlnet.args[0].<field>` names, if any. */
    fieldFor(message) {
      const m = /controlnet\.args\[\d+\]\.(\w+)/i.exec(message || '');
      if (!m) return null;
      if (!root.open) root.open = true;
      return fieldIds[m[1]] || null;
    },
  };
}
