// The only way the page talks to the server. Every URL is relative (no leading slash), so the
// WebUI also works under a gateway prefix such as /api/predict/<service>/. The session cookie is
// HttpOnly and sent by the browser; state-changing calls add the CSRF header. Never a token in a URL.
import { t } from './i18n.js';

// Request fields a message may name, so the page can show the error beside that control.
const KNOWN_FIELDS = [
  'init_images', 'mask', 'denoising_strength', 'resize_mode', 'mask_blur', 'inpainting_fill', 'inpaint_full_res_padding',
  'inpaint_full_res', 'inpainting_mask_invert', 'sampler_name', 'sampler_index', 'scheduler', 'steps', 'cfg_scale',
  'width', 'height', 'seed', 'subseed', 'batch_size', 'n_iter', 'negative_prompt', 'prompt', 'sd_model_checkpoint', 'sd_vae',
  'image', 'upscaling_resize_w', 'upscaling_resize_h', 'upscaling_resize', 'upscaler_1', 'upscaler_2',
  'extras_upscaler_2_visibility', 'gfpgan_visibility', 'codeformer_visibility', 'codeformer_weight',
];

export class ApiError extends Error {
  constructor(status, message, field = null, data = null) {
    super(message);
    this.status = status;
    this.field = field;
    this.data = data;
  }
}

let memoryCsrf = null;
const listeners = new Set();

export function setCsrf(token) { memoryCsrf = token || null; }
export function onUnauthorized(fn) { listeners.add(fn); }

export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return null;
}

function fieldIn(text) {
  if (typeof text !== 'string') return null;
  for (const f of KNOWN_FIELDS) if (new RegExp(`(^|[^\\w])${f}([^\\w]|$)`).test(text)) return f;
  return null;
}

/** Turns any of the API's error shapes (FastAPI 422 list, A1111 4-key object, plain text) into one message. */
export function describeError(status, data, path) {
  if (data && Array.isArray(data.detail)) {
    const parts = data.detail.map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc.filter((x) => x !== 'body').join('.') : '';
      return loc ? `${loc}: ${d.msg}` : String(d.msg);
    });
    const first = data.detail[0] || {};
    const field = Array.isArray(first.loc) && typeof first.loc[1] === 'string' ? first.loc[1] : null;
    return { message: parts.join('; '), field };
  }
  if (data && typeof data === 'object') {
    const detail = typeof data.detail === 'string' && data.detail ? data.detail : (data.errors || data.error || '');
    if (status === 404 && detail === 'Not Found') return { message: t('error.not_found', { path }), field: null };
    if (detail) return { message: String(detail), field: fieldIn(detail) };
  }
  if (typeof data === 'string' && data.trim()) return { message: data.trim().slice(0, 500), field: fieldIn(data) };
  return { message: t('error.http', { status }), field: null };
}

/**
 * api('sdapi/v1/options') → parsed JSON; api('sdapi/v1/txt2img', {body}) posts JSON.
 * Throws ApiError with a readable message (and the request field it names, if any).
 */
export async function api(path, { method, body, signal } = {}) {
  if (path.startsWith('/')) throw new Error('API paths must be relative: ' + path);
  method = method || (body === undefined ? 'GET' : 'POST');
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = cookie('atelier_csrf') || memoryCsrf;
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, t('error.network'));
  }
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!res.ok) {
    const { message, field } = describeError(res.status, data, path);
    const err = new ApiError(res.status, message, field, data);
    if (res.status === 401 && !path.startsWith('login')) for (const fn of listeners) fn(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => api(path, { ...opts, method: 'GET' });
export const post = (path, body = {}, opts) => api(path, { ...opts, method: 'POST', body });
