// Extensions tab (what is installed, GET sdapi/v1/extensions) and the FileBrowser tab
// (shown only with --filebrowser; its own issue fills it in).
import { get } from './api.js';
import { apply } from './i18n.js';
import { state } from './state.js';
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
  panel.append(h('div', { class: 'group wide' },
    h('h2', { i18n: 'filebrowser.title' }),
    h('p', { class: 'muted', i18n: 'filebrowser.soon' }),
    h('code', { class: 'path', text: state.flags.data_dir || '' })));
  return { panel, show() {} };
}
