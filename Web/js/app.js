// Boot: asks whether a login is needed, shows the login form or the WebUI, loads the server's
// lists, builds the tabs (less those hidden by --always-hide-tabs; FileBrowser only with
// --filebrowser) and wires the header.
import { get, post, setCsrf, onUnauthorized, ApiError } from './api.js';
import { t, apply, languageSwitch } from './i18n.js';
import { state, tabs, on, emit } from './state.js';
import { h, toast } from './ui.js';
import { hiddenTabs, tabKey } from './tabs.js';
import en from '../i18n/en.js';
import { loadModels, loadVaes, initModelControls } from './models.js';
import { createGenerationTab } from './generate.js';
import { createImg2imgTab } from './img2img.js';
import { createExtrasTab } from './extras.js';
import { createPngInfoTab } from './pnginfo.js';
import { createSettingsTab } from './settings.js';
import { createExtensionsTab, createFileBrowserTab } from './extensions.js';

const $ = (id) => document.getElementById(id);

const TAB_DEFS = [
  { id: 'txt2img', i18n: 'tab.txt2img', make: () => createGenerationTab('txt2img') },
  { id: 'img2img', i18n: 'tab.img2img', make: createImg2imgTab },
  { id: 'extras', i18n: 'tab.extras', make: createExtrasTab },
  { id: 'pnginfo', i18n: 'tab.pnginfo', make: createPngInfoTab },
  { id: 'settings', i18n: 'tab.settings', make: createSettingsTab },
  { id: 'extensions', i18n: 'tab.extensions', make: createExtensionsTab },
  { id: 'filebrowser', i18n: 'tab.filebrowser', make: createFileBrowserTab, when: (f) => f.filebrowser === true },
];


function bootMessage(message) {
  const boot = $('boot');
  boot.replaceChildren(h('div', { class: 'boot-error', role: 'alert' }, h('strong', { i18n: 'boot.failed' }), h('p', { text: message }),
    h('button', { type: 'button', class: 'btn', i18n: 'boot.retry', on: { click: () => location.reload() } })));
  boot.hidden = false;
}

// ── login ──────────────────────────────────────────────────────────────────────────────────────
let started = false;

function showLogin(reason) {
  $('app').hidden = true;
  $('boot').hidden = true;
  $('login').hidden = false;
  $('login_username_row').hidden = !state.auth.basic;
  const err = $('login_error');
  if (reason) { err.textContent = reason; err.hidden = false; } else err.hidden = true;
  (state.auth.basic ? $('login_username') : $('login_password')).focus();
}

async function submitLogin(e) {
  e.preventDefault();
  const err = $('login_error');
  const btn = $('login_submit');
  const password = $('login_password').value;
  if (!password) { err.textContent = t('login.empty'); err.hidden = false; $('login_password').focus(); return; }
  const body = { password };
  if (state.auth.basic) body.username = $('login_username').value;
  btn.disabled = true;
  err.hidden = true;
  try {
    const res = await post('login', body);
    setCsrf(res && res.csrf_token);
    $('login_password').value = '';
    state.auth.logged_in = true;
    $('login').hidden = true;
    if (started) $('app').hidden = false; else await start();
  } catch (ex) {
    err.textContent = ex instanceof ApiError && ex.status === 401 ? t('login.wrong') : ex.message;
    err.hidden = false;
    $('login_password').select();
  } finally {
    btn.disabled = false;
  }
}

// ── tabs ───────────────────────────────────────────────────────────────────────────────────────
function buildTabs() {
  const nav = $('tabs');
  const panels = $('panels');
  const hidden = hiddenTabs(state.flags);
  const shown = TAB_DEFS.filter((d) => (!d.when || d.when(state.flags)) && !hidden.has(d.id) && !hidden.has(tabKey(en[d.i18n])));
  for (const def of shown) {
    const tab = def.make();
    tabs.set(def.id, tab);
    tab.panel.hidden = true;
    tab.panel.setAttribute('aria-labelledby', 'tabbtn_' + def.id);
    panels.append(tab.panel);
    const b = h('button', { type: 'button', role: 'tab', class: 'tab', id: 'tabbtn_' + def.id, 'data-tab': def.id, i18n: def.i18n, 'aria-controls': tab.panel.id, tabindex: '-1' });
    b.addEventListener('click', () => showTab(def.id));
    nav.append(b);
  }
  nav.addEventListener('keydown', (e) => {
    const btns = [...nav.querySelectorAll('[role=tab]')];
    const i = btns.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % btns.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + btns.length) % btns.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = btns.length - 1;
    if (j === null) return;
    e.preventDefault();
    btns[j].focus();
    showTab(btns[j].dataset.tab);
  });
  const fromHash = location.hash.slice(1);
  showTab(tabs.has(fromHash) ? fromHash : shown[0]?.id);
}

function showTab(id) {
  if (!tabs.has(id)) return;
  for (const [k, tab] of tabs) {
    const active = k === id;
    tab.panel.hidden = !active;
    const b = $('tabbtn_' + k);
    b.setAttribute('aria-selected', String(active));
    b.tabIndex = active ? 0 : -1;
  }
  tabs.get(id).show?.();
  if (location.hash.slice(1) !== id) history.replaceState(null, '', '#' + id);
}
on('show-tab', showTab);

// ── start ──────────────────────────────────────────────────────────────────────────────────────
async function start() {
  const [flags, samplers, schedulers, upscalers] = await Promise.all([
    get('sdapi/v1/cmd-flags'),
    get('sdapi/v1/samplers'),
    get('sdapi/v1/schedulers'),
    get('sdapi/v1/upscalers').catch(() => [{ name: 'None' }]),
  ]);
  state.flags = flags || {};
  state.samplers = samplers || [];
  state.schedulers = schedulers || [];
  state.upscalers = upscalers || [{ name: 'None' }];
  await Promise.all([loadModels(), loadVaes()]);
  initModelControls();
  buildTabs();
  emit('upscalers', state.upscalers);
  on('options-changed', () => loadModels().catch(() => {}));
  $('logout').hidden = !state.auth.auth_required;
  started = true;
  $('boot').hidden = true;
  $('app').hidden = false;
  apply(document);
}

async function boot() {
  $('lang_switch_slot').append(languageSwitch('lang_switch'));
  document.querySelector('.login-lang').append(languageSwitch('login_lang_switch'));
  apply(document);
  $('login_form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', async () => {
    try { await post('logout'); } catch { /* leave anyway */ }
    location.reload();
  });
  onUnauthorized(() => {
    if (!state.auth.auth_required) state.auth = { ...state.auth, auth_required: true };
    state.auth.logged_in = false;
    showLogin(t('login.expired'));
  });
  try {
    state.auth = await get('internal/auth-status');
  } catch (e) {
    if (e.status === 404) state.auth = { auth_required: false, logged_in: true, basic: false };
    else { bootMessage(e.message); return; }
  }
  if (state.auth.auth_required && !state.auth.logged_in) { showLogin(); return; }
  try {
    await start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // the login form is up
    bootMessage(e.message);
    console.error(e);
  }
}

window.addEventListener('error', (e) => toast(String(e.message || e), 'error'));
window.atelier = { state, tabs };
boot();
