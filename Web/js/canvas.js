// An image slot with optional drawing on top: 'none' (just the image), 'sketch' (coloured
// strokes painted into the picture) or 'mask' (white strokes = the area to repaint). Strokes
// are kept in image pixels, drawn with pointer events (mouse, pen, touch), with undo and clear.
import { h, dropZone, fileToDataURL, loadImage, toast } from './ui.js';

export class ImageEditor {
  constructor({ id, mode = 'none', i18n = 'common.drop_image' }) {
    this.id = id;
    this.mode = mode;
    this.image = null;         // HTMLImageElement
    this.src = null;           // data URL of the image as given
    this.strokes = [];         // [{size, color, points: [{x, y}]}]
    this.current = null;
    this.brush = 32;
    this.color = '#ffffff';
    this.listeners = new Set();

    this.drop = dropZone({ id: id + '_drop', i18n, onFile: (f) => this.loadFile(f) });
    this.base = h('canvas', { class: 'editor-base', id: id + '_image' });
    this.overlay = h('canvas', { class: 'editor-overlay' + (mode === 'mask' ? ' mask' : ''), id: id + '_canvas' });
    this.cursor = h('div', { class: 'brush-cursor', hidden: true, 'aria-hidden': 'true' });
    this.stage = h('div', { class: 'editor-stage', hidden: true }, this.base, this.overlay, this.cursor);

    const tools = [];
    const remove = h('button', { type: 'button', class: 'btn tool', id: id + '_remove', i18nTitle: 'editor.remove', i18nAria: 'editor.remove', text: '✕' });
    remove.addEventListener('click', () => this.clearImage());
    if (mode !== 'none') {
      const undo = h('button', { type: 'button', class: 'btn tool', id: id + '_undo', i18nTitle: 'editor.undo', i18nAria: 'editor.undo', text: '↶' });
      const clear = h('button', { type: 'button', class: 'btn tool', id: id + '_clear', i18nTitle: 'editor.clear', i18nAria: 'editor.clear', text: '🧽' });
      const size = h('input', { type: 'range', id: id + '_brush_size', min: 1, max: 256, value: this.brush, i18nAria: 'editor.brush' });
      const sizeLabel = h('span', { class: 'brush-value', text: String(this.brush) });
      size.addEventListener('input', () => { this.brush = Number(size.value); sizeLabel.textContent = size.value; });
      undo.addEventListener('click', () => this.undo());
      clear.addEventListener('click', () => this.clearStrokes());
      tools.push(undo, clear, h('label', { class: 'brush', for: id + '_brush_size' }, h('span', { i18n: 'editor.brush' }), size, sizeLabel));
      if (mode === 'sketch') {
        this.color = '#ff3b30';
        const color = h('input', { type: 'color', id: id + '_color', value: this.color, i18nAria: 'editor.color' });
        color.addEventListener('input', () => { this.color = color.value; });
        tools.push(h('label', { class: 'brush', for: id + '_color' }, h('span', { i18n: 'editor.color' }), color));
      }
    }
    this.toolbar = h('div', { class: 'editor-tools', hidden: true }, ...tools, h('span', { class: 'spacer' }), remove);
    this.root = h('div', { class: 'editor dropzone-wrap', id }, this.drop.root, this.stage, this.toolbar);

    if (mode !== 'none') this.bindPointer();
    // a picture dropped on the stage replaces the current one
    this.stage.addEventListener('dragover', (e) => e.preventDefault());
    this.stage.addEventListener('drop', (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) this.loadFile(e.dataTransfer.files[0]); });
  }

  onChange(fn) { this.listeners.add(fn); }
  changed() { for (const fn of this.listeners) fn(this); }

  async loadFile(file) {
    try { await this.setImage(await fileToDataURL(file)); } catch (e) { toast(e.message, 'error'); }
  }

  async setImage(src) {
    const img = await loadImage(src);
    this.image = img;
    this.src = src;
    this.strokes = [];
    for (const c of [this.base, this.overlay]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
    this.base.getContext('2d').drawImage(img, 0, 0);
    this.redraw();
    this.drop.root.hidden = true;
    this.stage.hidden = false;
    this.toolbar.hidden = false;
    // as large as the column allows, at most 440 px tall, never distorted
    this.stage.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
    this.stage.style.width = `min(100%, ${Math.round((440 * img.naturalWidth) / img.naturalHeight)}px)`;
    this.changed();
  }

  clearImage() {
    this.image = null;
    this.src = null;
    this.strokes = [];
    this.drop.root.hidden = false;
    this.stage.hidden = true;
    this.toolbar.hidden = true;
    this.changed();
  }

  get hasImage() { return !!this.image; }
  get hasStrokes() { return this.strokes.length > 0; }

  undo() { this.strokes.pop(); this.redraw(); this.changed(); }
  clearStrokes() { this.strokes = []; this.redraw(); this.changed(); }

  /** image pixels per CSS pixel of the stage */
  scale() {
    const r = this.overlay.getBoundingClientRect();
    return r.width ? this.overlay.width / r.width : 1;
  }

  toImage(e) {
    const r = this.overlay.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (this.overlay.width / r.width), y: (e.clientY - r.top) * (this.overlay.height / r.height) };
  }

  bindPointer() {
    const o = this.overlay;
    o.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || !this.image) return;
      e.preventDefault();
      try { o.setPointerCapture(e.pointerId); } catch { /* synthetic pointer */ }
      this.current = { size: this.brush, color: this.mode === 'mask' ? '#ffffff' : this.color, points: [this.toImage(e)] };
      this.strokes.push(this.current);
      this.redraw();
    });
    o.addEventListener('pointermove', (e) => {
      this.moveCursor(e);
      if (!this.current) return;
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of (events.length ? events : [e])) this.current.points.push(this.toImage(ev));
      this.redraw();
    });
    const end = () => { if (this.current) { this.current = null; this.changed(); } };
    o.addEventListener('pointerup', end);
    o.addEventListener('pointercancel', end);
    o.addEventListener('pointerleave', () => { this.cursor.hidden = true; });
    o.addEventListener('pointerenter', () => { this.cursor.hidden = false; });
  }

  moveCursor(e) {
    const r = this.overlay.getBoundingClientRect();
    const d = this.brush / this.scale();
    Object.assign(this.cursor.style, { width: d + 'px', height: d + 'px', left: (e.clientX - r.left) + 'px', top: (e.clientY - r.top) + 'px' });
    this.cursor.hidden = false;
  }

  static drawStrokes(ctx, strokes, color) {
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (const s of strokes) {
      ctx.strokeStyle = color || s.color;
      ctx.fillStyle = color || s.color;
      ctx.lineWidth = s.size;
      if (s.points.length === 1) {
        ctx.beginPath();
        ctx.arc(s.points[0].x, s.points[0].y, s.size / 2, 0, Math.PI * 2);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      ctx.moveTo(s.points[0].x, s.points[0].y);
      for (const p of s.points.slice(1)) ctx.lineTo(p.x, p.y);
      ctx.stroke();
    }
  }

  redraw() {
    const ctx = this.overlay.getContext('2d');
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    ImageEditor.drawStrokes(ctx, this.strokes);
  }

  /** The picture (with the sketch painted in, in 'sketch' mode) as a PNG data URL. */
  imageDataURL() {
    if (!this.image) return null;
    if (this.mode !== 'sketch' || !this.strokes.length) return this.src;
    const c = document.createElement('canvas');
    c.width = this.image.naturalWidth; c.height = this.image.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(this.image, 0, 0);
    ImageEditor.drawStrokes(ctx, this.strokes);
    return c.toDataURL('image/png');
  }

  /** The mask in A1111's convention: white = repaint, black = keep, at the image's size. */
  maskDataURL() {
    if (!this.image) return null;
    const c = document.createElement('canvas');
    c.width = this.image.naturalWidth; c.height = this.image.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#000000';
    ctx.fillRect(0, 0, c.width, c.height);
    ImageEditor.drawStrokes(ctx, this.strokes, '#ffffff');
    return c.toDataURL('image/png');
  }
}
