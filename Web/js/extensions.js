// Extensions tab (what is installed, GET sdapi/v1/extensions) and the FileBrowser tab
// (shown only with --filebrowser: the data folder's files through atelier/files).
import { api, get, cookie } from './api.js';
import { apply, t } from './i18n.js';
import { h, toast } from './ui.js';

export function createExtensionsTab() {
  const panel = h('section', { id: 'tab_extensions', class: 'panel', role: 'tabpanel' });
  const body = h('div', { id: 'extensions_list' });
  const refresh = h('button', { type: 'button', class: 'btn', id: 'extensions_refresh', i18n: 'extensions.refresh' });
  panel.append(h('div', { class: 'group wide' }, h('div', { class: 'settings-top' }, h('h2', { i18n: 'extensions.installed' }), refresh), body));

  async function load() {
    refresh.disabled = true;
    try {
      const list = (await get('sdapi/v1/extensions')) || [];
      if (!list.length) {
        body.replaceChildren(h('p', { class: 'muted', id: 'extensions_empty', i18n: 'extensions.none' }));
        return;
      }
      const cols = ['name', 'remote', 'branch', 'version', 'commit_date', 'enabled'];
      body.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'params', id: 'extensions_table' },
        h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', { scope: 'col', i18n: 'extensions.col_' + c })))),
        h('tbody', {}, ...list.map((e) => h('tr', {}, ...cols.map((c) => {
          let v = e[c];
          if (c === 'commit_date' && typeof v === 'number') v = new Date(v * 1000).toISOString().slice(0, 10);
          if (c === 'enabled') return h('td', {}, h('span', { class: 'pill ' + (v ? 'ok' : ''), 'data-i18n': v ? 'extensions.yes' : 'extensions.no' }));
          return h('td', { text: v === null || v === undefined ? '' : String(v) });
        })))))));
      apply(body);
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: e.message }));
    } finally {
      refresh.disabled = false;
    }
  }
  refresh.addEventListener('click', () => load().catch((e) => toast(e.message, 'error')));
  let loaded = false;
  return { panel, show() { if (!loaded) { loaded = true; load(); } } };
}

export function createFileBrowserTab() {
  const panel = h('section', { id: 'tab_filebrowser', class: 'panel', role: 'tabpanel' });
  const crumbs = h('nav', { class: 'crumbs', id: 'filebrowser_path', 'aria-label': 'path' });
  const list = h('div', { id: 'filebrowser_list' });
  const file = h('input', { type: 'file', id: 'filebrowser_upload_file' });
  const upload = h('button', { type: 'button', class: 'btn', id: 'filebrowser_upload', i18n: 'filebrowser.upload' });
  const status = h('p', { class: 'muted', id: 'filebrowser_status', role: 'status' });
  panel.append(h('div', { class: 'group wide filebrowser' },
    h('h2', { i18n: 'filebrowser.title' }), h('p', { class: 'muted', i18n: 'filebrowser.hint' }),
    crumbs, list, h('div', { class: 'upload-row' }, file, upload), status));
  let here = '';
  const q = (p) => 'path=' + encodeURIComponent(p);
  /** 1536 → "1.5 KB", as file managers show sizes (powers of 1024) */
  const human = (n) => {
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  };
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) || d.getTime() === 0 ? '' : d.toLocaleString();
  };

  async function load(path) {
    try {
      const out = await get('atelier/files?' + q(path));
      here = out.path;
      const parts = here ? here.split('/') : [];
      const links = [h('button', { type: 'button', class: 'crumb', 'data-path': '', text: '/', title: t('filebrowser.root') })];
      parts.forEach((p, i) => {
        if (i > 0) links.push(h('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }));
        links.push(h('button', { type: 'button', class: 'crumb', 'data-path': parts.slice(0, i + 1).join('/'), text: p }));
      });
      links[links.length - 1].setAttribute('aria-current', 'location');
      crumbs.replaceChildren(...links);
      crumbs.querySelectorAll('button').forEach((b) => b.addEventListener('click', () => load(b.dataset.path)));
      if (!out.items.length) { list.replaceChildren(h('p', { class: 'muted', id: 'filebrowser_empty', i18n: 'filebrowser.empty' })); apply(list); return; }
      list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'files', id: 'filebrowser_table' },
        h('thead', {}, h('tr', {}, h('th', { i18n: 'filebrowser.name' }), h('th', { class: 'num', i18n: 'filebrowser.size' }),
          h('th', { class: 'when', i18n: 'filebrowser.modified' }), h('th', {}))),
        h('tbody', {}, ...out.items.map((it) => {
          const full = here ? here + '/' + it.name : it.name;
          const name = it.is_dir
            ? h('button', { type: 'button', class: 'link dir', 'data-dir': full, text: '📁 ' + it.name + '/' })
            : h('a', { href: 'atelier/files/download?' + q(full), download: it.name, text: it.name });
          if (it.is_dir) name.addEventListener('click', () => load(full));
          const del = h('button', { type: 'button', class: 'btn small danger', 'data-delete': full, i18n: 'filebrowser.delete' });
          del.addEventListener('click', async () => {
            if (!window.confirm(t('filebrowser.confirm_delete', { name: full }))) return;
            try { await api('atelier/files?' + q(full), { method: 'DELETE' }); load(here); } catch (e) { toast(e.message, 'error'); }
          });
          return h('tr', {}, h('td', { class: 'name' }, name), h('td', { class: 'num', text: it.is_dir ? '' : human(it.size), title: it.is_dir ? '' : String(it.size) }),
            h('td', { class: 'when', text: when(it.modified) }), h('td', { class: 'actions' }, del));
        })))));
      apply(list);
    } catch (e) {
      list.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: e.message }));
    }
  }

  upload.addEventListener('click', async () => {
    const f = file.files && file.files[0];
    if (!f) { toast(t('filebrowser.choose'), 'info', 3000); return; }
    const target = here ? here + '/' + f.name : f.name;
    upload.disabled = true;
    status.textContent = t('filebrowser.uploading', { name: f.name });
    try {
      const headers = {};
      const csrf = cookie('atelier_csrf');
      if (csrf) headers['X-CSRF-Token'] = csrf;
      const res = await fetch('atelier/files/upload?' + q(target), { method: 'POST', body: f, headers, credentials: 'same-origin' });
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail || String(res.status));
      status.textContent = t('filebrowser.uploaded', { name: target });
      file.value = '';
      load(here);
    } catch (e) {
      status.textContent = '';
      toast(e.message, 'error');
    } finally {
      upload.disabled = false;
    }
  });
  let loaded = false;
  return { panel, show() { if (!loaded) { loaded = true; load(''); } } };
}
