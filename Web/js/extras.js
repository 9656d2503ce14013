// Extras tab: resize / upscale one picture through POST sdapi/v1/extra-single-image.
import { post } from './api.js';
import { t } from './i18n.js';
import { state, on, sendTo } from './state.js';
import { h, slider, select, setOptions, checkbox, numberField, dataURL, showFieldError, clearFieldErrors } from './ui.js';
import { ImageEditor } from './canvas.js';
import { openLightbox } from './generate.js';

export function createExtrasTab() {
  const panel = h('section', { id: 'tab_extras', class: 'panel', role: 'tabpanel' });
  const editor = new ImageEditor({ id: 'extras_image', mode: 'none' });

  let resizeMode = 0;
  const scaleBy = slider({ id: 'extras_upscaling_resize', i18n: 'extras.resize', min: 1, max: 8, step: 0.05, value: 4 });
  const toW = numberField({ id: 'extras_upscaling_resize_w', i18n: 'gen.width', value: 512, min: 64, max: 8192, step: 8 });
  const toH = numberField({ id: 'extras_upscaling_resize_h', i18n: 'gen.height', value: 512, min: 64, max: 8192, step: 8 });
  const crop = checkbox({ id: 'extras_upscaling_crop', i18n: 'extras.crop', checked: true });
  const byPane = h('div', { class: 'mode-pane', id: 'extras_scale_by_pane' }, scaleBy.root);
  const toPane = h('div', { class: 'mode-pane', id: 'extras_scale_to_pane', hidden: true }, h('div', { class: 'row two' }, toW.root, toH.root), crop.root);
  const modeBar = h('div', { class: 'subtabs', role: 'tablist' });
  for (const [i, key, pane] of [[0, 'extras.scale_by', byPane], [1, 'extras.scale_to', toPane]]) {
    const b = h('button', { type: 'button', role: 'tab', class: 'subtab', id: `extras_mode_${i}`, i18n: key, 'aria-selected': String(i === 0) });
    b.addEventListener('click', () => {
      resizeMode = i;
      byPane.hidden = i !== 0; toPane.hidden = i !== 1;
      for (const x of modeBar.children) x.setAttribute('aria-selected', String(x === b));
    });
    modeBar.append(b);
  }
  const names = () => state.upscalers.map((u) => u.name);
  const up1 = select({ id: 'extras_upscaler_1', i18n: 'extras.upscaler_1', options: names(), value: 'None' });
  const up2 = select({ id: 'extras_upscaler_2', i18n: 'extras.upscaler_2', options: names(), value: 'None' });
  const up2vis = slider({ id: 'extras_upscaler_2_visibility', i18n: 'extras.upscaler_2_visibility', min: 0, max: 1, step: 0.001, value: 0 });
  const gfpgan = slider({ id: 'extras_gfpgan_visibility', i18n: 'extras.gfpgan', min: 0, max: 1, step: 0.001, value: 0 });
  const codeformer = slider({ id: 'extras_codeformer_visibility', i18n: 'extras.codeformer', min: 0, max: 1, step: 0.001, value: 0 });
  const cfWeight = slider({ id: 'extras_codeformer_weight', i18n: 'extras.codeformer_weight', min: 0, max: 1, step: 0.001, value: 0 });
  on('upscalers', () => { setOptions(up1.input, names()); setOptions(up2.input, names()); });

  const run = h('button', { type: 'button', class: 'btn primary generate', id: 'extras_generate', i18n: 'gen.generate' });
  const result = h('img', { class: 'result-image', id: 'extras_result_image', alt: '', hidden: true });
  const placeholder = h('div', { class: 'gallery-empty', 'aria-hidden': 'true' }, h('span', { text: '🖼️' }));
  const info = h('div', { class: 'infotext', id: 'html_info_extras' });
  const errorBox = h('div', { class: 'error-box', id: 'extras_error', role: 'alert', hidden: true });
  const save = h('a', { class: 'btn tool', id: 'extras_save', i18nTitle: 'gen.save', i18nAria: 'gen.save', text: '💾', download: 'extras.png', href: '#', role: 'button' });
  const toImg2img = h('button', { type: 'button', class: 'btn', i18n: 'gen.send_img2img' });
  const toInpaint = h('button', { type: 'button', class: 'btn', i18n: 'gen.send_inpaint' });
  const buttons = h('div', { class: 'result-buttons', hidden: true }, save, toImg2img, toInpaint);

  panel.append(h('div', { class: 'gen-body' },
    h('div', { class: 'left-col' },
      h('div', { class: 'group' }, h('span', { class: 'label-text', i18n: 'extras.source' }), editor.root),
      h('div', { class: 'group' }, modeBar, byPane, toPane),
      h('div', { class: 'group' }, h('div', { class: 'row two' }, up1.root, up2.root), up2vis.root),
      h('div', { class: 'group' }, gfpgan.root, h('div', { class: 'row two' }, codeformer.root, cfWeight.root))),
    h('div', { class: 'results' },
      h('div', { class: 'generate-box' }, run),
      h('div', { class: 'gallery' }, h('div', { class: 'gallery-main' }, placeholder, result)),
      buttons, errorBox, info)));

  const fieldIds = {
    image: 'extras_image', upscaling_resize: 'extras_upscaling_resize', upscaling_resize_w: 'extras_upscaling_resize_w',
    upscaling_resize_h: 'extras_upscaling_resize_h', upscaler_1: 'extras_upscaler_1', upscaler_2: 'extras_upscaler_2',
    extras_upscaler_2_visibility: 'extras_upscaler_2_visibility', gfpgan_visibility: 'extras_gfpgan_visibility',
    codeformer_visibility: 'extras_codeformer_visibility', codeformer_weight: 'extras_codeformer_weight',
  };
  function fail(message, field) {
    errorBox.replaceChildren(h('strong', { i18n: 'gen.error' }), ' ', message);
    errorBox.hidden = false;
    if (field && fieldIds[field]) showFieldError(panel, fieldIds[field], message);
  }

  run.addEventListener('click', async () => {
    clearFieldErrors(panel);
    errorBox.hidden = true;
    if (!editor.hasImage) { fail(t('extras.need_image'), 'image'); return; }
    run.disabled = true;
    run.setAttribute('data-i18n', 'extras.working');
    run.textContent = t('extras.working');
    try {
      const res = await post('sdapi/v1/extra-single-image', {
        image: editor.imageDataURL(), resize_mode: resizeMode, show_extras_results: true,
        upscaling_resize: scaleBy.value, upscaling_resize_w: Number(toW.input.value), upscaling_resize_h: Number(toH.input.value),
        upscaling_crop: crop.input.checked, upscaler_1: up1.input.value, upscaler_2: up2.input.value,
        extras_upscaler_2_visibility: up2vis.value, gfpgan_visibility: gfpgan.value,
        codeformer_visibility: codeformer.value, codeformer_weight: cfWeight.value, upscale_first: false,
      });
      result.src = dataURL(res.image);
      result.hidden = false;
      placeholder.hidden = true;
      save.href = result.src;
      buttons.hidden = false;
      // html_info is HTML from the server: show its text only (DOMParser runs no scripts)
      info.textContent = new DOMParser().parseFromString(res.html_info || '', 'text/html').body.textContent;
    } catch (e) {
      fail(e.message, e.field);
    } finally {
      run.disabled = false;
      run.setAttribute('data-i18n', 'gen.generate');
      run.textContent = t('gen.generate');
    }
  });
  result.addEventListener('click', () => openLightbox(result.src));
  toImg2img.addEventListener('click', () => sendTo('img2img', { image: result.src, mode: 'img2img' }));
  toInpaint.addEventListener('click', () => sendTo('img2img', { image: result.src, mode: 'inpaint' }));

  return {
    panel,
    async receive(payload) { if (payload?.image) await editor.setImage(payload.image); },
    show() {},
  };
}
