// Strings live in one table per language (Web/i18n/<lang>.js). Elements carry data-i18n
// (text), data-i18n-placeholder, data-i18n-title, data-i18n-aria and data-i18n-args (JSON),
// so switching the language re-labels the page in place. The choice is remembered per browser.
import en from '../i18n/en.js';
import zh from '../i18n/zh-CN.js';

export const LANGUAGES = [
  { code: 'en', name: 'English' },
  { code: 'zh-CN', name: '简体中文' },
];
const TABLES = { en, 'zh-CN': zh };
const STORAGE_KEY = 'atelier.lang';
const listeners = new Set();

function initialLanguage() {
  let saved = null;
  try { saved = localStorage.getItem(STORAGE_KEY); } catch { /* storage disabled */ }
  if (saved && TABLES[saved]) return saved;
  const nav = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return nav.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

let current = initialLanguage();

export function lang() { return current; }

export function t(key, args) {
  let s = TABLES[current][key];
  if (s === undefined) s = TABLES.en[key];
  if (s === undefined) {
    console.warn('i18n: missing key', key);
    s = key;
  }
  if (args) s = s.replace(/\{(\w+)\}/g, (m, k) => (args[k] !== undefined && args[k] !== null ? String(args[k]) : m));
  return s;
}

export function has(key) { return TABLES.en[key] !== undefined; }

function argsOf(el) {
  const raw = el.getAttribute('data-i18n-args');
  if (!raw) return undefined;
  try { return JSON.parse(raw); } catch { return undefined; }
}

/** Labels every element under root that carries data-i18n* attributes. */
export function apply(root = document) {
  const all = (sel) => (root.matches && root.matches(sel) ? [root] : []).concat([...root.querySelectorAll(sel)]);
  for (const el of all('[data-i18n]')) el.textContent = t(el.getAttribute('data-i18n'), argsOf(el));
  for (const el of all('[data-i18n-placeholder]')) el.placeholder = t(el.getAttribute('data-i18n-placeholder'));
  for (const el of all('[data-i18n-title]')) el.title = t(el.getAttribute('data-i18n-title'));
  for (const el of all('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.getAttribute('data-i18n-aria')));
}

export function setLang(code) {
  if (!TABLES[code]) return;
  current = code;
  try { localStorage.setItem(STORAGE_KEY, code); } catch { /* storage disabled */ }
  document.documentElement.lang = code;
  apply(document);
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) { listeners.add(fn); }

/** The visible language switch: one button per language; the current one is pressed. */
export function languageSwitch(id) {
  const wrap = document.createElement('div');
  wrap.className = 'segmented';
  wrap.setAttribute('role', 'group');
  wrap.setAttribute('data-i18n-aria', 'top.language');
  wrap.id = id;
  for (const l of LANGUAGES) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = l.name;
    b.lang = l.code;
    b.dataset.lang = l.code;
    b.className = 'seg';
    b.addEventListener('click', () => setLang(l.code));
    wrap.append(b);
  }
  const sync = () => {
    for (const b of wrap.children) b.setAttribute('aria-pressed', String(b.dataset.lang === current));
  };
  sync();
  onLangChange(sync);
  return wrap;
}

document.documentElement.lang = current;
