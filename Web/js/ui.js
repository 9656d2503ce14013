// Small DOM helpers shared by the tabs: element builder, labelled controls (slider + number
// like A1111's), drop zones, toasts, per-control error messages.
import { t } from './i18n.js';

/** h('div', {class, id, i18n, on: {click}}, ...children) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'i18n') { el.setAttribute('data-i18n', v); el.textContent = t(v, props.i18nArgs); }
    else if (k === 'i18nArgs') el.setAttribute('data-i18n-args', JSON.stringify(v));
    else if (k === 'i18nTitle') { el.setAttribute('data-i18n-title', v); el.title = t(v); }
    else if (k === 'i18nPlaceholder') { el.setAttribute('data-i18n-placeholder', v); el.placeholder = t(v); }
    else if (k === 'i18nAria') { el.setAttribute('data-i18n-aria', v); el.setAttribute('aria-label', t(v)); }
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** A1111-style slider: label, number box and range, kept in sync. */
export function slider({ id, i18n, min, max, step = 1, value, hardMax }) {
  const number = h('input', { id, type: 'number', min, max: hardMax ?? max, step, value, class: 'num' });
  const range = h('input', { id: id + '_range', type: 'range', min, max, step, value, tabindex: '-1', 'aria-hidden': 'true' });
  range.addEventListener('input', () => { number.value = range.value; number.dispatchEvent(new Event('input', { bubbles: true })); });
  number.addEventListener('input', () => { if (number.value !== '') range.value = number.value; });
  const root = h('div', { class: 'field slider' },
    h('div', { class: 'slider-head' }, h('label', { for: id, i18n }), number),
    range);
  return {
    root, input: number,
    get value() { return Number(number.value); },
    set value(v) { number.value = v; range.value = v; number.dispatchEvent(new Event('input', { bubbles: true })); },
  };
}

export function select({ id, i18n, options = [], value }) {
  const sel = h('select', { id });
  setOptions(sel, options, value);
  const root = h('div', { class: 'field' }, h('label', { for: id, i18n }), sel);
  return { root, input: sel };
}

/** options: [{value, label}] or [{value, i18n}] or strings */
export function setOptions(sel, options, value) {
  const keep = value !== undefined ? value : sel.value;
  sel.replaceChildren(...options.map((o) => {
    if (typeof o === 'string') o = { value: o, label: o };
    const opt = h('option', { value: o.value });
    if (o.i18n) { opt.setAttribute('data-i18n', o.i18n); opt.textContent = t(o.i18n); } else opt.textContent = o.label ?? o.value;
    return opt;
  }));
  if (keep !== undefined && [...sel.options].some((o) => o.value === String(keep))) sel.value = String(keep);
}

export function numberField({ id, i18n, value, min, max, step = 1 }) {
  const input = h('input', { id, type: 'number', value, min, max, step });
  return { root: h('div', { class: 'field' }, h('label', { for: id, i18n }), input), input };
}

export function radios({ id, i18n, options, value }) {
  const group = h('div', { class: 'radios', role: 'radiogroup', id, 'aria-labelledby': id + '_label' });
  for (const o of options) {
    const input = h('input', { type: 'radio', name: id, value: o.value, id: `${id}_${o.value}` });
    if (String(o.value) === String(value)) input.checked = true;
    group.append(h('label', { class: 'radio', for: input.id }, input, h('span', { i18n: o.i18n })));
  }
  const root = h('div', { class: 'field' }, h('span', { class: 'label-text', id: id + '_label', i18n }), group);
  return {
    root, input: group,
    get value() { const c = group.querySelector('input:checked'); return c ? c.value : null; },
    set value(v) { const r = group.querySelector(`input[value="${CSS.escape(String(v))}"]`); if (r) r.checked = true; },
  };
}

export function checkbox({ id, i18n, checked = false }) {
  const input = h('input', { type: 'checkbox', id });
  input.checked = checked;
  return { root: h('label', { class: 'check', for: id }, input, h('span', { i18n })), input };
}

export function fileToDataURL(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(t('error.bad_image')));
    img.src = src;
  });
}

/** A drop area that takes an image file by drop, click (file dialog), or paste. */
export function dropZone({ id, i18n = 'common.drop_image', onFile, accept = 'image/*' }) {
  const input = h('input', { type: 'file', accept, id: id + '_file', class: 'visually-hidden', tabindex: '-1' });
  const zone = h('div', { id, class: 'dropzone', tabindex: '0', role: 'button', i18nAria: i18n },
    h('div', { class: 'dropzone-icon', 'aria-hidden': 'true', text: '⬆' }),
    h('div', { class: 'dropzone-text', i18n }), input);
  const take = (file) => { if (file && file.type.startsWith('image/')) onFile(file); else toast(t('error.not_image'), 'error'); };
  zone.addEventListener('click', (e) => { if (e.target !== input) input.click(); });
  zone.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
  input.addEventListener('change', () => { if (input.files[0]) take(input.files[0]); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault(); zone.classList.remove('over');
    if (e.dataTransfer.files[0]) take(e.dataTransfer.files[0]);
  });
  zone.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith('image/'));
    if (item) take(item.getAsFile());
  });
  return { root: zone, input };
}

export function toast(message, kind = 'info', ms = 5000) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(el);
  setTimeout(() => el.remove(), ms);
}

/** Shows message under the control for `field` inside scope (falls back to `fallback`). */
export function showFieldError(scope, controlId, message) {
  const control = controlId && scope.querySelector('#' + CSS.escape(controlId));
  if (!control) return false;
  const field = control.closest('.field, .check, .dropzone-wrap') || control.parentElement;
  control.setAttribute('aria-invalid', 'true');
  field.classList.add('has-error');
  const msg = h('p', { class: 'error-text field-error', role: 'alert' }, message);
  field.append(msg);
  control.scrollIntoView?.({ block: 'nearest' });
  return true;
}

export function clearFieldErrors(scope) {
  for (const el of scope.querySelectorAll('.field-error')) el.remove();
  for (const el of scope.querySelectorAll('.has-error')) el.classList.remove('has-error');
  for (const el of scope.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export function dataURL(b64, mime = 'image/png') {
  return b64.startsWith('data:') ? b64 : `data:${mime};base64,${b64}`;
}

export function formatSeconds(s) {
  if (!isFinite(s) || s < 0) return '—';
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  return `${m}m ${Math.round(s - m * 60)}s`;
}
