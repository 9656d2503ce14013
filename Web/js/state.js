// What the tabs share: the server's lists and flags, and a small event bus
// ('models' when the checkpoint list changes, 'send' to move an image between tabs).
export const state = {
  flags: {},          // GET sdapi/v1/cmd-flags
  options: {},        // GET sdapi/v1/options
  models: [],         // GET sdapi/v1/sd-models
  vaes: [],           // GET sdapi/v1/sd-vae
  samplers: [],       // GET sdapi/v1/samplers
  schedulers: [],     // GET sdapi/v1/schedulers
  upscalers: [],      // GET sdapi/v1/upscalers
  auth: { auth_required: false, logged_in: true, basic: false },
  busy: false,        // a generation started from this page is running
};

const bus = new EventTarget();
export function on(name, fn) { bus.addEventListener(name, (e) => fn(e.detail)); }
export function emit(name, detail) { bus.dispatchEvent(new CustomEvent(name, { detail })); }

/** Tab registry: id → {show(), receive(payload)}; filled by app.js. */
export const tabs = new Map();
export function showTab(id) { emit('show-tab', id); }

/** Sends {image, parameters, mode} to another tab and switches to it. */
export function sendTo(tabId, payload) {
  const tab = tabs.get(tabId);
  if (!tab) return false;
  showTab(tabId);
  tab.receive?.(payload);
  return true;
}
