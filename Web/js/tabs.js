// Which tabs --always-hide-tabs removes: tab ids or names, comma-separated (a JSON list or an
// array works too), compared without case, spaces, '-' or '_' ("PNG Info" = "pnginfo").
export function tabKey(name) {
  return String(name).toLowerCase().replace(/[\s_-]+/g, '');
}

export function hiddenTabs(flags) {
  let v = flags.always_hide_tabs ?? flags.hide_tabs ?? [];
  if (typeof v === 'string') {
    try { v = JSON.parse(v); } catch { v = v.split(','); }
  }
  if (!Array.isArray(v)) v = [];
  return new Set(v.map(tabKey).filter(Boolean));
}
