// PNG Info tab: drop a picture, read its generation parameters (POST sdapi/v1/png-info), and
// send them to txt2img / img2img / inpaint, or the picture to Extras.
import { post } from './api.js';
import { t } from './i18n.js';
import { sendTo } from './state.js';
import { h } from './ui.js';
import { ImageEditor } from './canvas.js';

// shown in the table; the defaults png-info adds for missing keys are left out
const SHOWN = ['Prompt', 'Negative prompt', 'Steps', 'Sampler', 'Schedule type', 'CFG scale', 'Seed', 'Size-1', 'Size-2',
  'Model hash', 'Model', 'Denoising strength', 'Clip skip', 'RNG', 'Version'];

export function createPngInfoTab() {
  const panel = h('section', { id: 'tab_pnginfo', class: 'panel', role: 'tabpanel' });
  const editor = new ImageEditor({ id: 'pnginfo_image', mode: 'none', i18n: 'pnginfo.drop' });
  const raw = h('pre', { class: 'infotext', id: 'pnginfo_text', tabindex: '0' });
  const table = h('table', { class: 'params', id: 'pnginfo_params' });
  const items = h('div', { class: 'items', id: 'pnginfo_items' });
  const errorBox = h('div', { class: 'error-box', id: 'pnginfo_error', role: 'alert', hidden: true });
  const empty = h('p', { class: 'muted', id: 'pnginfo_empty', i18n: 'pnginfo.empty' });
  const toTxt = h('button', { type: 'button', class: 'btn', id: 'pnginfo_send_to_txt2img', i18n: 'pnginfo.send_txt2img' });
  const toImg = h('button', { type: 'button', class: 'btn', id: 'pnginfo_send_to_img2img', i18n: 'gen.send_img2img' });
  const toInpaint = h('button', { type: 'button', class: 'btn', id: 'pnginfo_send_to_inpaint', i18n: 'gen.send_inpaint' });
  const toExtras = h('button', { type: 'button', class: 'btn', id: 'pnginfo_send_to_extras', i18n: 'gen.send_extras' });
  const buttons = h('div', { class: 'result-buttons', hidden: true }, toTxt, toImg, toInpaint, toExtras);
  const out = h('div', { class: 'results' }, empty, errorBox, buttons, raw, table, items);

  panel.append(h('div', { class: 'gen-body' },
    h('div', { class: 'left-col' }, h('div', { class: 'group' }, editor.root)), out));

  let parameters = null;

  editor.onChange(async () => {
    errorBox.hidden = true;
    raw.textContent = '';
    table.replaceChildren();
    items.replaceChildren();
    buttons.hidden = true;
    parameters = null;
    if (!editor.hasImage) { empty.hidden = false; empty.setAttribute('data-i18n', 'pnginfo.empty'); empty.textContent = t('pnginfo.empty'); return; }
    empty.hidden = true;
    try {
      const res = await post('sdapi/v1/png-info', { image: editor.src });
      parameters = res.parameters || {};
      if (!res.info) {
        empty.hidden = false;
        empty.setAttribute('data-i18n', 'pnginfo.none');
        empty.textContent = t('pnginfo.none');
      } else {
        raw.textContent = res.info;
        table.replaceChildren(...SHOWN.filter((k) => parameters[k] !== undefined && parameters[k] !== '')
          .map((k) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { text: String(parameters[k]) }))));
      }
      const extra = Object.entries(res.items || {});
      if (extra.length) {
        items.append(h('h3', { i18n: 'pnginfo.other_items' }),
          ...extra.map(([k, v]) => h('div', { class: 'item' }, h('strong', { text: k }), h('pre', { text: typeof v === 'string' ? v : JSON.stringify(v, null, 1) }))));
      }
      buttons.hidden = false;
      toTxt.disabled = toImg.disabled = toInpaint.disabled = !res.info;
    } catch (e) {
      errorBox.replaceChildren(h('strong', { i18n: 'gen.error' }), ' ', e.message);
      errorBox.hidden = false;
    }
  });

  toTxt.addEventListener('click', () => sendTo('txt2img', { parameters }));
  toImg.addEventListener('click', () => sendTo('img2img', { parameters, image: editor.src, mode: 'img2img' }));
  toInpaint.addEventListener('click', () => sendTo('img2img', { parameters, image: editor.src, mode: 'inpaint' }));
  toExtras.addEventListener('click', () => sendTo('extras', { image: editor.src }));

  return { panel, receive: async (p) => { if (p?.image) await editor.setImage(p.image); }, show() {} };
}
