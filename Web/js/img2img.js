// img2img tab: modes img2img, Sketch, Inpaint (mask painted on a canvas) and Inpaint upload,
// with A1111's resize mode, denoising strength and inpaint settings; sends A1111's img2img JSON.
import { t } from './i18n.js';
import { h, slider, radios, select, checkbox, dropZone, fileToDataURL, toast } from './ui.js';
import { ImageEditor } from './canvas.js';
import { createGenerationTab } from './generate.js';

export const MODES = [
  { id: 'img2img', i18n: 'img2img.mode_img2img' },
  { id: 'sketch', i18n: 'img2img.mode_sketch' },
  { id: 'inpaint', i18n: 'img2img.mode_inpaint' },
  { id: 'inpaint_upload', i18n: 'img2img.mode_inpaint_upload' },
];

class FieldError extends Error {
  constructor(message, field) { super(message); this.field = field; }
}

export function createImg2imgTab() {
  let mode = 'img2img';
  const editors = {
    img2img: new ImageEditor({ id: 'img2img_image', mode: 'none' }),
    sketch: new ImageEditor({ id: 'img2img_sketch', mode: 'sketch' }),
    inpaint: new ImageEditor({ id: 'img2img_inpaint', mode: 'mask' }),
    inpaint_upload: new ImageEditor({ id: 'img2img_inpaint_upload', mode: 'none' }),
  };
  // Inpaint upload: the mask is a second picture
  let uploadMask = null;
  const maskPreview = h('img', { class: 'mask-preview', id: 'img2img_mask_preview', alt: '', hidden: true });
  const maskDrop = dropZone({ id: 'img2img_inpaint_mask', i18n: 'img2img.drop_mask', onFile: async (f) => {
    uploadMask = await fileToDataURL(f);
    maskPreview.src = uploadMask;
    maskPreview.hidden = false;
  } });
  const maskRemove = h('button', { type: 'button', class: 'btn tool', i18nTitle: 'editor.remove', i18nAria: 'editor.remove', text: '✕',
    on: { click: () => { uploadMask = null; maskPreview.hidden = true; } } });

  const modeBar = h('div', { class: 'subtabs modes', role: 'tablist', id: 'img2img_modes' });
  const modePanes = {};
  for (const m of MODES) {
    const b = h('button', { type: 'button', role: 'tab', class: 'subtab', id: `img2img_mode_${m.id}`, 'data-mode': m.id, i18n: m.i18n });
    b.addEventListener('click', () => setMode(m.id));
    modeBar.append(b);
    const children = [editors[m.id].root];
    if (m.id === 'inpaint') children.unshift(h('p', { class: 'hint', i18n: 'img2img.inpaint_hint' }));
    if (m.id === 'sketch') children.unshift(h('p', { class: 'hint', i18n: 'img2img.sketch_hint' }));
    if (m.id === 'inpaint_upload') {
      children.push(h('div', { class: 'field dropzone-wrap', id: 'img2img_mask_upload' },
        h('span', { class: 'label-text', i18n: 'img2img.mask' }), maskDrop.root,
        h('div', { class: 'mask-row' }, maskPreview, maskRemove)));
    }
    modePanes[m.id] = h('div', { class: 'mode-pane', id: `img2img_pane_${m.id}` }, ...children);
  }
  const input = h('div', { class: 'group img-input' }, modeBar, ...Object.values(modePanes));

  // ── img2img settings ───────────────────────────────────────────────────────────────────────
  const resizeMode = radios({ id: 'img2img_resize_mode', i18n: 'img2img.resize_mode', value: 0, options: [
    { value: 0, i18n: 'img2img.resize_just' }, { value: 1, i18n: 'img2img.resize_crop' },
    { value: 2, i18n: 'img2img.resize_fill' }, { value: 3, i18n: 'img2img.resize_latent' }] });
  const maskBlur = slider({ id: 'img2img_mask_blur', i18n: 'img2img.mask_blur', min: 0, max: 64, value: 4 });
  const maskMode = radios({ id: 'img2img_mask_mode', i18n: 'img2img.mask_mode', value: 0, options: [
    { value: 0, i18n: 'img2img.inpaint_masked' }, { value: 1, i18n: 'img2img.inpaint_not_masked' }] });
  const fill = radios({ id: 'img2img_inpainting_fill', i18n: 'img2img.masked_content', value: 1, options: [
    { value: 0, i18n: 'img2img.fill' }, { value: 1, i18n: 'img2img.original' },
    { value: 2, i18n: 'img2img.latent_noise' }, { value: 3, i18n: 'img2img.latent_nothing' }] });
  const area = radios({ id: 'img2img_inpaint_full_res', i18n: 'img2img.inpaint_area', value: 0, options: [
    { value: 0, i18n: 'img2img.whole_picture' }, { value: 1, i18n: 'img2img.only_masked' }] });
  const padding = slider({ id: 'img2img_inpaint_full_res_padding', i18n: 'img2img.padding', min: 0, max: 256, step: 4, value: 32 });
  const inpaintBox = h('div', { class: 'group inpaint-settings', id: 'img2img_inpaint_settings', hidden: true },
    maskBlur.root, maskMode.root, fill.root, h('div', { class: 'row two' }, area.root, padding.root));
  const denoise = slider({ id: 'img2img_denoising_strength', i18n: 'gen.denoising', min: 0, max: 1, step: 0.01, value: 0.75 });
  const useSize = h('button', { type: 'button', class: 'btn small', id: 'img2img_size_from_image', i18n: 'img2img.size_from_image' });

  // ── script: A1111's "Outpainting mk2" (the API's script_name / script_args) ──────────────────────
  const script = select({ id: 'img2img_script', i18n: 'img2img.script', value: '', options: [
    { value: '', i18n: 'img2img.script_none' }, { value: 'Outpainting mk2', label: 'Outpainting mk2' }] });
  const opPixels = slider({ id: 'img2img_outpaint_pixels', i18n: 'img2img.outpaint_pixels', min: 8, max: 256, step: 8, value: 128 });
  const opBlur = slider({ id: 'img2img_outpaint_mask_blur', i18n: 'img2img.mask_blur', min: 0, max: 64, value: 8 });
  const opDirs = ['left', 'right', 'up', 'down'].map((d) => checkbox({ id: `img2img_outpaint_${d}`, i18n: `img2img.outpaint_${d}`, checked: true }));
  const opFalloff = slider({ id: 'img2img_outpaint_noise_q', i18n: 'img2img.outpaint_falloff', min: 0, max: 4, step: 0.01, value: 1 });
  const opColor = slider({ id: 'img2img_outpaint_color_variation', i18n: 'img2img.outpaint_color', min: 0, max: 1, step: 0.01, value: 0.05 });
  const outpaintBox = h('div', { class: 'group', id: 'img2img_outpaint_settings', hidden: true },
    h('p', { class: 'hint', i18n: 'img2img.outpaint_hint' }), opPixels.root, opBlur.root,
    h('div', { class: 'field', id: 'img2img_outpaint_direction' }, h('span', { class: 'label-text', i18n: 'img2img.outpaint_direction' }),
      h('div', { class: 'row' }, ...opDirs.map((c) => c.root))),
    h('div', { class: 'row two' }, opFalloff.root, opColor.root));
  script.input.addEventListener('change', () => { outpaintBox.hidden = script.input.value !== 'Outpainting mk2'; });

  const beforeSampling = h('div', {}, h('div', { class: 'group' }, resizeMode.root, useSize), inpaintBox,
    h('div', { class: 'group' }, script.root), outpaintBox);

  function setMode(id) {
    mode = id;
    for (const [k, pane] of Object.entries(modePanes)) {
      pane.hidden = k !== id;
      modeBar.querySelector(`[data-mode="${k}"]`).setAttribute('aria-selected', String(k === id));
    }
    inpaintBox.hidden = !(id === 'inpaint' || id === 'inpaint_upload');
  }

  async function collect() {
    const ed = editors[mode];
    if (!ed.hasImage) throw new FieldError(t('img2img.need_image'), 'init_images');
    const body = {
      init_images: [ed.imageDataURL()],
      resize_mode: Number(resizeMode.value),
      denoising_strength: denoise.value,
    };
    if (script.input.value === 'Outpainting mk2') {
      // [info, pixels, mask_blur, direction, noise_q, color_variation], as A1111's script takes them
      const direction = ['left', 'right', 'up', 'down'].filter((d, i) => opDirs[i].input.checked);
      body.script_name = 'Outpainting mk2';
      body.script_args = ['', Math.round(opPixels.value), Math.round(opBlur.value), direction, opFalloff.value, opColor.value];
      return body;   // the script makes its own masks
    }
    if (mode === 'inpaint' || mode === 'inpaint_upload') {
      let mask;
      if (mode === 'inpaint') {
        if (!ed.hasStrokes) throw new FieldError(t('img2img.need_mask'), 'mask');
        mask = ed.maskDataURL();
      } else {
        if (!uploadMask) throw new FieldError(t('img2img.need_mask_upload'), 'mask');
        mask = uploadMask;
      }
      Object.assign(body, {
        mask,
        mask_blur: Math.round(maskBlur.value),
        inpainting_mask_invert: Number(maskMode.value),
        inpainting_fill: Number(fill.value),
        inpaint_full_res: Number(area.value) === 1,
        inpaint_full_res_padding: Math.round(padding.value),
      });
    }
    return body;
  }

  const fieldIds = {
    // errors about the picture go next to the picture of the current mode
    get init_images() { return editors[mode].id; },
    get mask() { return mode === 'inpaint_upload' ? 'img2img_mask_upload' : editors[mode].id; },
    mask_blur: 'img2img_mask_blur',
    inpainting_fill: 'img2img_inpainting_fill', inpaint_full_res: 'img2img_inpaint_full_res',
    inpaint_full_res_padding: 'img2img_inpaint_full_res_padding', inpainting_mask_invert: 'img2img_mask_mode',
    resize_mode: 'img2img_resize_mode', denoising_strength: 'img2img_denoising_strength',
    script_name: 'img2img_script', script_args: 'img2img_outpaint_settings',
    'script_args[1]': 'img2img_outpaint_pixels', 'script_args[2]': 'img2img_outpaint_mask_blur',
    'script_args[3]': 'img2img_outpaint_direction', 'script_args[4]': 'img2img_outpaint_noise_q',
    'script_args[5]': 'img2img_outpaint_color_variation',
  };

  const tab = createGenerationTab('img2img', {
    input, beforeSampling, afterCfg: denoise.root, collect, fieldIds,
    setParameters(p) {
      if (p['Denoising strength']) denoise.value = Number(p['Denoising strength']);
      if (p['Mask blur']) maskBlur.value = Number(p['Mask blur']);
    },
  });

  useSize.addEventListener('click', () => {
    const img = editors[mode].image;
    if (!img) { toast(t('img2img.need_image'), 'info', 3000); return; }
    const r8 = (v) => Math.max(64, Math.round(v / 8) * 8);
    tab.panel.querySelector('#img2img_width').value = r8(img.naturalWidth);
    tab.panel.querySelector('#img2img_width').dispatchEvent(new Event('input', { bubbles: true }));
    tab.panel.querySelector('#img2img_height').value = r8(img.naturalHeight);
    tab.panel.querySelector('#img2img_height').dispatchEvent(new Event('input', { bubbles: true }));
  });

  setMode('img2img');
  const base = tab.receive;
  return {
    ...tab,
    editors, setMode,
    get mode() { return mode; },
    async receive(payload) {
      const target = payload?.mode && editors[payload.mode] ? payload.mode : 'img2img';
      setMode(target);
      tab.showPane('generation');
      if (payload?.image) {
        try { await editors[target].setImage(payload.image); } catch (e) { toast(e.message, 'error'); }
      }
      base(payload);
    },
  };
}
