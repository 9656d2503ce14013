#!/usr/bin/env python3
"""Make the committed inpainting image-op fixtures in Tests/Fixtures/inpaint/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_inpaint_fixtures.py --ref PATH/TO/shared/ref [--out Tests/Fixtures/inpaint] [--check]

A1111 1.10 prepares an inpainting job with Pillow and OpenCV calls on uint8 images (the oracle's
REF/inpaint.py, imported from --ref, models modules/processing.py, masking.py and
images.resize_image line for line). This writes byte-exact reference outputs of those calls, and of
the whole inpaint.py functions, so the Swift port can be tested without Python:

  in-*.png        the inputs (numpy-made with fixed default_rng seeds, plus the committed
                  Tests/Fixtures/images/init-128.png / mask-128.png, copied in as in-init-128.png /
                  in-mask-128.png)
  <id>-<role>.png every output, named by case id and role ("out", or e.g. "image", "overlay")
  <id>-latent_mask_array.npy   prepare: inpaint.latent_mask_array(...) as little-endian float32 [H/8, W/8]
  index.json      versions and every case (schema in tools/README.md "Inpainting image-op fixtures")

Kinds: cv_blur (inpaint.blur_mask = cv2.GaussianBlur (k,1) then (1,k)), cv_blur_x (its first pass
alone), pil_gaussian (ImageFilter.GaussianBlur), pil_convert (RGBA <-> RGBa), pil_paste_mask
(paste through an L mask onto a fresh RGBa canvas), pil_alpha_composite, fill (inpaint.fill),
resize (Image.resize LANCZOS / BICUBIC, with and without box), resize_image (inpaint.resize_image
modes 0/1/2), prepare (inpaint.prepare + latent_mask_array), apply_overlay (inpaint.apply_overlay).

PNG modes are the images' true modes (L, RGB, RGBA). An "RGBa" (premultiplied) image is stored as
an RGBA PNG of its raw bytes (Image.frombytes("RGBA", size, im.tobytes())); its file record then
says "mode": "RGBa" -- read it back with Image.frombytes("RGBa", size, png.tobytes()).

The script also carries numpy models of the primitive operations (the integer arithmetic of
Pillow 13's libImaging and of OpenCV's fixed-point GaussianBlur, see tools/README.md) and records per
case whether the model reproduces Pillow / OpenCV bit for bit ("model_identical"); it prints any
case where it does not. --check re-makes everything into a temporary folder and compares it byte for
byte with the committed files (exit 1 on any difference).
"""
import argparse
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile

import cv2
import numpy as np
import PIL
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, "Tests", "Fixtures", "images")

LANCZOS = Image.Resampling.LANCZOS
BICUBIC = Image.Resampling.BICUBIC
RESAMPLE = {"LANCZOS": LANCZOS, "BICUBIC": BICUBIC}
MADE_WITH = {"pillow": "13.0.0", "opencv": "5.0.0", "numpy": "2.4.6"}


# =============================================================================================
# numpy models of the primitives (the spec the Swift port follows; see tools/README.md)
# =============================================================================================

f32 = np.float32


def _shiftfordiv255(t):
    return ((t >> 8) + t) >> 8


def m_premultiply(rgba):
    """Convert.c rgbA2rgba: c' = MULDIV255(c, a) = SHIFTFORDIV255(c*a + 128); alpha kept."""
    x = rgba.astype(np.int64)
    out = x.copy()
    out[..., :3] = _shiftfordiv255(x[..., :3] * x[..., 3:4] + 128)
    return out.astype(np.uint8)


def m_unpremultiply(rgba_):
    """Convert.c rgba2rgbA: a in {0, 255} -> copy; else CLIP8((255 * c) / a), integer division."""
    x = rgba_.astype(np.int64)
    a = x[..., 3:4]
    v = np.minimum((255 * x[..., :3]) // np.where(a == 0, 1, a), 255)
    v = np.where((a == 0) | (a == 255), x[..., :3], v)
    return np.concatenate([v, a], axis=-1).astype(np.uint8)


def m_paste_L(canvas, src, mask):
    """Paste.c paste_mask_L on every byte: out = DIV255(out*(255-m) + in*m), DIV255(v) = SHIFTFORDIV255(v + 128)."""
    m = mask.astype(np.int64)
    if canvas.ndim == 3:
        m = m[..., None]
    return _shiftfordiv255(canvas.astype(np.int64) * (255 - m) + src.astype(np.int64) * m + 128).astype(np.uint8)


def m_alpha_composite(dst, src):
    """AlphaComposite.c (PRECISION_BITS 7)."""
    d, s = dst.astype(np.int64), src.astype(np.int64)
    sa, da = s[..., 3:4], d[..., 3:4]
    outa255 = sa * 255 + da * (255 - sa)
    coef1 = sa * 255 * 255 * 128 // np.where(outa255 == 0, 1, outa255)
    coef2 = 255 * 128 - coef1
    rgb = _shiftfordiv255(s[..., :3] * coef1 + d[..., :3] * coef2 + (0x80 << 7)) >> 7
    a = _shiftfordiv255(outa255 + 0x80)
    out = np.where(sa == 0, d, np.concatenate([rgb, a], axis=-1))
    return out.astype(np.uint8)


def m_gaussian_box_radius(radius, passes=3):
    """BoxBlur.c _gaussian_blur_radius, in C float (float32) arithmetic, sqrt/floor in double."""
    r = f32(radius)
    sigma2 = f32(f32(r * r) / f32(passes))
    L = f32(math.sqrt(12.0 * float(sigma2) + 1.0))
    l = f32(math.floor((float(L) - 1.0) / 2.0))
    a = f32(f32(f32(2) * l + f32(1)) * f32(f32(l * f32(l + f32(1))) - f32(f32(3) * sigma2)))
    a = f32(a / f32(f32(6) * f32(sigma2 - f32(f32(l + f32(1)) * f32(l + f32(1))))))
    return f32(l + a)


def m_box_weights(float_radius):
    """ImagingHorizontalBoxBlur: radius = (int)r; ww = (UINT32)((float)(1<<24) / (r*2 + 1)); fw = ((1<<24) - (2*radius+1)*ww) / 2."""
    fr = f32(float_radius)
    radius = int(fr)
    ww = int(f32(f32(1 << 24) / f32(f32(fr * f32(2)) + f32(1))))
    fw = (((1 << 24) - (radius * 2 + 1) * ww) & 0xFFFFFFFF) // 2
    return radius, ww, fw


def _box_line_pass(p, float_radius):
    """One ImagingLineBoxBlur pass along axis 1 of an int64 [H, W, C] array; indices clamp to the edge."""
    radius, ww, fw = m_box_weights(float_radius)
    w = p.shape[1]
    x = np.arange(w)
    c = lambda i: np.clip(i, 0, w - 1)  # noqa: E731
    acc = p[:, c(x[:, None] + np.arange(-radius, radius + 1)[None, :])].sum(axis=2)
    bulk = acc * ww + (p[:, c(x - radius - 1)] + p[:, c(x + radius + 1)]) * fw
    return (bulk + (1 << 23)) >> 24


def m_gaussian_blur(a, radius, passes=3):
    """img.filter(ImageFilter.GaussianBlur(radius)) on every band of an [H, W(, C)] uint8 array."""
    if radius == 0:
        return a.copy()
    p = (a[..., None] if a.ndim == 2 else a).astype(np.int64)
    fr = m_gaussian_box_radius(radius, passes)
    if fr != 0:
        for _ in range(passes):
            p = _box_line_pass(p, fr)
        p = p.transpose(1, 0, 2)
        for _ in range(passes):
            p = _box_line_pass(p, fr)
        p = p.transpose(1, 0, 2)
    p = p.astype(np.uint8)
    return p[..., 0] if a.ndim == 2 else p


def _sinc(x):
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x):
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def _bicubic(x):
    a = -0.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


_FILTERS = {"LANCZOS": (_lanczos, 3.0), "BICUBIC": (_bicubic, 2.0)}


def m_resample_coeffs(in_size, in0, in1, out_size, name):
    """Resample.c precompute_coeffs + normalize_coeffs_8bpc: [(xmin, [Q22 ints])] per output index."""
    filt, support = _FILTERS[name]
    scale = float(f32(f32(in1) - f32(in0))) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    inv = 1.0 / filterscale
    out = []
    for xx in range(out_size):
        center = float(f32(in0)) + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = [filt((x + xmin - center + 0.5) * inv) for x in range(xmax)]
        total = 0.0
        for v in ws:
            total += v
        if total != 0.0:
            ws = [v / total for v in ws]
        out.append((xmin, [int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22)) for v in ws]))
    return out


def _resample_pass(p, coeffs, axis):
    res = []
    for xmin, ks in coeffs:
        ss = np.full(p.shape[:axis] + p.shape[axis + 1:], 1 << 21, np.int64)
        for j, k in enumerate(ks):
            ss = ss + np.take(p, xmin + j, axis=axis) * k
        res.append(np.clip(ss >> 22, 0, 255))
    return np.stack(res, axis=axis)


def resize_vertical_first(in_w, in_h, out_w, out_h):
    """Pillow 13 (PR #9549): the vertical pass runs first when the height shrinks by more than twice
    as many pixels as the width does -- measured on the whole input image, not the box."""
    return out_h < in_h and (in_h - out_h) > 2 * (in_w - out_w)


def resize_passes(in_w, in_h, size, box=None):
    """The passes Image.resize runs for L / RGB / RGBa, in order: 'copy', 'crop', or a list of
    'horizontal' / 'vertical'."""
    box = tuple(float(f32(b)) for b in (box if box is not None else (0, 0, in_w, in_h)))
    xs, ys = size
    if (xs, ys) == (in_w, in_h) and box == (0, 0, in_w, in_h):
        return "copy"
    if box[0] == int(box[0]) and box[2] - box[0] == xs and box[1] == int(box[1]) and box[3] - box[1] == ys:
        return "crop"
    need_h = xs != in_w or box[0] != 0 or box[2] != xs
    need_v = ys != in_h or box[1] != 0 or box[3] != ys
    order = ["vertical", "horizontal"] if resize_vertical_first(in_w, in_h, xs, ys) else ["horizontal", "vertical"]
    return [p for p in order if (need_h if p == "horizontal" else need_v)]


def m_resample(a, size, name, box=None):
    """Image.resize(size, resample, box) of an L / RGB uint8 array (RGBA: see m_resize)."""
    p = (a[..., None] if a.ndim == 2 else a).astype(np.int64)
    h, w = p.shape[:2]
    box = tuple(float(f32(b)) for b in (box if box is not None else (0, 0, w, h)))
    xs, ys = size
    if (xs, ys) == (w, h) and box == (0, 0, w, h):
        out = p                                               # Image.resize: copy
    elif box[0] == int(box[0]) and box[2] - box[0] == xs and box[1] == int(box[1]) and box[3] - box[1] == ys:
        out = p[int(box[1]):int(box[3]), int(box[0]):int(box[2])]    # _imaging.c _resize: crop
    else:
        need_h = xs != w or box[0] != 0 or box[2] != xs
        need_v = ys != h or box[1] != 0 or box[3] != ys
        cv_ = m_resample_coeffs(h, box[1], box[3], ys, name)
        ch = m_resample_coeffs(w, box[0], box[2], xs, name)
        out = p
        if resize_vertical_first(w, h, xs, ys):
            if need_v:
                out = _resample_pass(out, cv_, 0)
            if need_h:
                out = _resample_pass(out, ch, 1)
        else:
            if need_h:
                y0 = cv_[0][0]
                y1 = cv_[-1][0] + len(cv_[-1][1])
                out = _resample_pass(p[y0:y1], ch, 1)
                cv_ = [(ymin - y0, ks) for ymin, ks in cv_]
            if need_v:
                out = _resample_pass(out, cv_, 0)
    out = out.astype(np.uint8)
    return out[..., 0] if a.ndim == 2 else out


def m_resize(a, mode, size, name, box=None):
    if mode == "RGBA":                                        # Image.resize premultiplies RGBA / LA
        return m_unpremultiply(m_resample(m_premultiply(a), size, name, box))
    return m_resample(a, size, name, box)


def m_cv_q8_kernel(n, sigma):
    """OpenCV getGaussianKernelBitExact (softdouble; cv2.getGaussianKernel(n, sigma, CV_64F) returns the
    same doubles) -> getGaussianKernelFixedPoint_ED with 8 fraction bits (error diffusion, cvRound =
    half to even; the centre tap takes 256 - sum of the others)."""
    kd = cv2.getGaussianKernel(n, sigma, ktype=cv2.CV_64F)[:, 0]
    res = [0] * n
    err, s = 0.0, 0
    for i in range(n // 2):
        adj = kd[i] * 256.0 + err
        v0 = int(np.rint(adj))
        err = adj - v0
        res[i] = res[n - 1 - i] = v0
        s += v0
    res[n // 2] = 256 - 2 * s
    return np.array(res, np.int64)


def _reflect101(p, n):
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - 2 - p
    return p


def m_cv_blur_1d(a, sigma, axis):
    """cv2.GaussianBlur(a, (k, 1) if axis == 1 else (1, k), sigma) of a uint8 [H, W] array,
    k = 2*int(2.5*sigma + 0.5) + 1: out = (sum(q8[j] * a[reflect101(x + j - k//2)]) + 128) >> 8;
    a side of length 1 is copied (OpenCV sets that ksize to 1)."""
    k = 2 * int(2.5 * sigma + 0.5) + 1
    x = a.T if axis == 0 else a
    w = x.shape[1]
    if w == 1:
        out = x.copy()
    else:
        q8, r = m_cv_q8_kernel(k, sigma), k // 2
        idx = np.array([[_reflect101(i + j - r, w) for j in range(k)] for i in range(w)])
        out = ((x[:, idx].astype(np.int64) * q8).sum(-1) + 128) >> 8
    out = out.astype(np.uint8)
    return np.ascontiguousarray(out.T if axis == 0 else out)


def m_blur_mask(a, bx, by):
    if bx > 0:
        a = m_cv_blur_1d(a, bx, 1)
    if by > 0:
        a = m_cv_blur_1d(a, by, 0)
    return a


def m_fill(rgb, mask):
    """inpaint.fill composed of the models above."""
    h, w = mask.shape
    rgba = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
    masked = m_paste_L(np.zeros((h, w, 4), np.uint8), m_premultiply(rgba), 255 - mask)
    mod = np.zeros((h, w, 4), np.uint8)
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = m_unpremultiply(m_gaussian_blur(masked, radius))
        for _ in range(repeats):
            mod = m_alpha_composite(mod, blurred)
    return mod[..., :3]


# =============================================================================================
# Inputs (numpy only; the PNGs are the source of truth)
# =============================================================================================

def noise(rng, w, h, c=None):
    return rng.integers(0, 256, (h, w) if c is None else (h, w, c), dtype=np.uint8)


def shapes_mask(w, h, rects=(), circles=(), value=255):
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in rects:
        m[y0:y1, x0:x1] = value
    for cx, cy, r in circles:
        m[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = value
    return m


def radial_grey(w, h, cx, cy, r0, r1):
    """Grey-level mask: 255 inside r0, falling linearly to 0 at r1."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip(np.rint(255 * (r1 - d) / (r1 - r0)), 0, 255).astype(np.uint8)


def smooth_rgb(rng, w, h, grain=3.0):
    """Gradients + low-frequency waves + a little seeded grain: photo-like, compresses well."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ph = rng.uniform(0, 2 * np.pi, 3)
    r = 40 + 170 * xx / max(w - 1, 1) + 25 * np.sin(2 * np.pi * yy / 37.0 + ph[0])
    g = 220 - 150 * yy / max(h - 1, 1) + 30 * np.sin(2 * np.pi * (xx + yy) / 53.0 + ph[1])
    b = 128 + 90 * np.sin(2 * np.pi * xx / 29.0 + ph[2]) * np.cos(2 * np.pi * yy / 41.0)
    im = np.stack([r, g, b], axis=2) + rng.normal(0, grain, (h, w, 3))
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def smooth_grey(rng, w, h, grain=3.0):
    return smooth_rgb(rng, w, h, grain)[..., 1].copy()


def rgba_all_alpha(rng, w, h, colour="noise"):
    """RGBA with every alpha value 0..255 present (the first 256 pixels are a permutation of them)."""
    assert w * h >= 256
    col = noise(rng, w, h, 3) if colour == "noise" else smooth_rgb(rng, w, h)
    a = rng.integers(0, 256, w * h).astype(np.uint8)
    a[:256] = rng.permutation(256).astype(np.uint8)
    return np.concatenate([col, a.reshape(h, w, 1)], axis=2)


def image_from(arr, mode):
    if mode == "RGBa":
        return Image.frombytes("RGBa", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def arr_of(im):
    """Raw bytes of a PIL image as [H, W(, C)] uint8 (RGBa: the premultiplied bytes)."""
    n = len(im.getbands())
    a = np.frombuffer(im.tobytes(), np.uint8)
    return a.reshape(im.height, im.width) if n == 1 else a.reshape(im.height, im.width, n).copy()


# =============================================================================================
# Writing
# =============================================================================================

def png_bytes(im):
    """PNG of a PIL image in its own mode; RGBa as an RGBA PNG of the raw bytes."""
    store = Image.frombytes("RGBA", im.size, im.tobytes()) if im.mode == "RGBa" else im
    assert store.mode in ("L", "RGB", "RGBA"), store.mode
    buf = io.BytesIO()
    store.save(buf, format="PNG", optimize=False, compress_level=9)
    data = buf.getvalue()
    back = Image.open(io.BytesIO(data))
    assert back.mode == store.mode and back.tobytes() == store.tobytes(), "PNG round trip"
    return data


class Writer:
    def __init__(self, out):
        self.out = out
        self.files = {}

    def _write(self, name, data):
        assert name not in self.files, f"duplicate file name {name}"
        with open(os.path.join(self.out, name), "wb") as f:
            f.write(data)
        self.files[name] = len(data)

    def png(self, name, im):
        data = png_bytes(im)
        self._write(name, data)
        return {"file": name, "mode": im.mode, "size": [im.width, im.height],
                "sha256": hashlib.sha256(data).hexdigest()}

    def npy(self, name, arr):
        arr = np.ascontiguousarray(arr, dtype="<f4")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        self._write(name, data)
        return {"file": name, "dtype": "<f4", "shape": list(arr.shape),
                "sha256": hashlib.sha256(data).hexdigest()}


class Inputs:
    """Each input image is written once, as in-<name>.png; cases refer to it by file record."""

    def __init__(self, writer):
        self.w = writer
        self.recs = {}
        self.images = {}

    def add(self, name, im, doc=None):
        assert name not in self.recs, name
        rec = self.w.png(f"in-{name}.png", im)
        if doc:
            rec["doc"] = doc
        self.recs[name] = rec
        self.images[name] = im
        return rec

    def __getitem__(self, name):
        return self.images[name]

    def rec(self, name):
        return {k: v for k, v in self.recs[name].items() if k != "doc"}


def fl(v):
    """JSON-friendly float (keeps ints as ints)."""
    return float(v) if isinstance(v, float) else v


# =============================================================================================
# Cases
# =============================================================================================

BLUR_PAIRS = [(1, 1), (2, 2), (4, 4), (3, 0), (0, 5), (7, 2), (16, 16), (64, 64), (4, 11)]
# (mask input, blur pairs); masks are made in make_inputs()
CV_BLUR_CASES = [
    ("mask-128", [(4, 4), (16, 16), (64, 64)]),
    ("circle-64x64", BLUR_PAIRS),
    ("noise-37x53", BLUR_PAIRS),
    ("shapes-128x96", [(1, 1), (4, 4), (7, 2), (4, 11), (64, 64)]),
    ("rect-20x12", [(4, 4), (7, 2), (16, 16), (64, 64)]),
    ("noise-1x1", [(4, 4), (64, 64)]),
    ("noise-3x2", [(1, 1), (4, 4), (16, 16)]),
    ("noise-5x9", [(2, 2), (4, 11), (64, 64)]),
    ("bar-1x17", [(3, 0), (0, 5), (4, 4)]),
    ("noise-23x1", [(3, 0), (4, 4), (16, 16)]),
    ("noise-64x64", [(2, 2), (4, 4)]),
]
CV_BLUR_X_CASES = [("noise-37x53", 7), ("circle-64x64", 4), ("rect-20x12", 16), ("rect-20x12", 64),
                   ("noise-5x9", 64), ("shapes-128x96", 4)]

GAUSS_RADII = [0, 0.5, 1, 2, 3.7, 4, 16, 64, 256]
PIL_GAUSSIAN_CASES = [            # (input, radii)
    ("rgba-noise-48x40:RGBa", GAUSS_RADII),
    ("rgba-noise-7x5:RGBa", [1, 4, 64, 256]),
    ("rgba-holes-96x72:RGBa", [2, 16, 256]),
    ("grey-noise-64x64", [0, 0.5, 1, 3.7, 16, 64]),
    ("grey-1x1", [2]),
    ("grey-1x30", [4]),
    ("rgb-smooth-40x56", [0.5, 2, 3.7, 16, 256]),
    ("rgb-noise-3x2", [1, 64]),
]

RESIZE_CASES = [  # (input, (w, h), filter, box or None, note)
    ("grey-smooth-48x40", (96, 80), "LANCZOS", None, "2x up"),
    ("grey-smooth-48x40", (96, 80), "BICUBIC", None, "2x up"),
    ("grey-smooth-48x40", (24, 20), "LANCZOS", None, "2x down"),
    ("grey-smooth-48x40", (24, 20), "BICUBIC", None, "2x down"),
    ("grey-smooth-48x40", (61, 29), "LANCZOS", None, "x up, y down: Pillow 13 runs the vertical pass first"),
    ("grey-smooth-48x40", (61, 29), "BICUBIC", None, "x up, y down: vertical pass first"),
    ("grey-smooth-48x40", (47, 25), "LANCZOS", None, "both down, dh 15 > 2*dw 2: vertical pass first"),
    ("grey-smooth-48x40", (30, 25), "LANCZOS", None, "both down, dh 15 <= 2*dw 36: horizontal pass first"),
    ("grey-smooth-48x40", (48, 13), "LANCZOS", None, "height only (no horizontal pass)"),
    ("grey-smooth-48x40", (17, 40), "BICUBIC", None, "width only (no vertical pass)"),
    ("mask-128", (16, 16), "BICUBIC", None, "8x down (the latent-mask size)"),
    ("mask-128", (16, 12), "LANCZOS", None, "non-uniform down"),
    ("rgb-smooth-40x30", (97, 71), "LANCZOS", None, "non-integer up"),
    ("rgb-smooth-40x30", (97, 71), "BICUBIC", None, "non-integer up"),
    ("rgb-smooth-40x30", (17, 11), "LANCZOS", None, "non-integer down"),
    ("rgb-smooth-40x30", (17, 11), "BICUBIC", None, "non-integer down"),
    ("rgb-smooth-40x30", (40, 90), "LANCZOS", None, "3x taller, same width"),
    ("rgb-noise-7x5", (64, 48), "LANCZOS", None, "large up of a tiny image"),
    ("rgb-noise-7x5", (3, 2), "BICUBIC", None, "down to 3x2"),
    ("rgb-noise-7x5", (1, 1), "LANCZOS", None, "down to 1x1"),
    ("rgb-smooth-40x30", (40, 7), "BICUBIC", (0, 0, 40, 0),
     "zero-height box at the top: resize_image mode 2's fill band (default filter BICUBIC): 1.125*row0 - 0.125*row1"),
    ("rgb-smooth-40x30", (40, 7), "BICUBIC", (0, 30, 40, 30), "zero-height box at the bottom (mode 2 fill)"),
    ("rgb-smooth-40x30", (9, 30), "BICUBIC", (0, 0, 0, 30), "zero-width box at the left (mode 2 fill)"),
    ("rgb-smooth-40x30", (9, 30), "BICUBIC", (40, 0, 40, 30), "zero-width box at the right (mode 2 fill)"),
    ("rgb-smooth-40x30", (40, 7), "LANCZOS", (0, 30, 40, 30), "zero-height box at the bottom, LANCZOS: 3 taps"),
    ("grey-smooth-48x40", (48, 5), "LANCZOS", (0, 0, 48, 0), "zero-height box, L, LANCZOS"),
    ("grey-smooth-48x40", (48, 5), "BICUBIC", (0, 40, 48, 40), "zero-height box, L, BICUBIC"),
    ("rgb-smooth-40x30", (40, 33), "LANCZOS", (3.5, 2.25, 30.75, 20.5), "fractional box, up"),
    ("grey-smooth-48x40", (11, 9), "BICUBIC", (0.5, 0.25, 47.25, 39.5), "fractional box, down"),
    ("grey-smooth-48x40", (16, 16), "LANCZOS", (4, 4, 20, 20), "integer box of the output size: a plain crop"),
    ("rgba-noise-48x40", (30, 25), "LANCZOS", None, "RGBA: premultiplied, resized as RGBa, unpremultiplied"),
    ("rgba-noise-48x40", (61, 29), "BICUBIC", None, "RGBA, vertical pass first"),
]

RESIZE_IMAGE_CASES = [  # (input, mode, w, h)
    *[("rgb-smooth-128x96", m, 96, 128) for m in (0, 1, 2)],
    *[("rgb-smooth-160x128", m, 128, 128) for m in (0, 1, 2)],
    *[("rgb-smooth-64x64", m, 128, 96) for m in (0, 1, 2)],
    *[("rgb-smooth-100x37", m, 64, 64) for m in (0, 1, 2)],
    *[("grey-smooth-128x96", m, 96, 128) for m in (0, 1, 2)],
    *[("grey-smooth-37x100", m, 64, 64) for m in (0, 1, 2)],
]

PREPARE_DEFAULTS = dict(blur_x=4, blur_y=4, mask_round=True, invert=False, full_res=False, padding=32,
                        inpainting_fill=1)
PREPARE_CASES = [  # (id, init, mask, W, H, overrides, doc)
    ("whole-default", "init-128", "mask-128", 128, 128, {},
     "A1111 UI defaults with 'original': whole picture, blur 4, round"),
    ("whole-invert-blur0-fill", "init-128", "mask-128", 128, 128, dict(invert=True, blur_x=0, blur_y=0, inpainting_fill=0),
     "inpaint not masked, no blur, masked content 'fill'"),
    ("whole-resize-grey-blur2x6-noise", "init-160x120", "grey-160x120", 128, 128, dict(blur_x=2, blur_y=6, inpainting_fill=2),
     "init and mask 160x120 resized to 128x128 (just resize), grey-level L mask, blur (2, 6), latent noise"),
    ("whole-noround-grey-fill", "init-96x72", "grey-96x72", 96, 72, dict(mask_round=False, inpainting_fill=0),
     "grey L mask without rounding (latent_mask_array keeps fractions), fill"),
    ("whole-rgba-alpha-round", "init-128", "rgba-alpha-128", 128, 128, {},
     "RGBA mask with transparent pixels: its alpha, thresholded > 128"),
    ("whole-rgba-opaque", "init-96x72", "rgba-opaque-96x72", 96, 72, dict(blur_x=0, blur_y=0),
     "RGBA mask with every alpha 255: convert('L') of its colours"),
    ("whole-rgb-mask-nothing", "init-96x72", "rgb-mask-96x72", 96, 72, dict(blur_x=2, blur_y=6, inpainting_fill=3),
     "RGB mask: convert('L') (ITU-R 601 luma), latent nothing"),
    ("whole-100x37-to-64", "init-100x37", "mask-100x37", 64, 64, dict(inpainting_fill=0),
     "non-proportional just-resize of init and mask, fill"),
    ("masked-pad32", "init-128", "mask-128", 128, 128, dict(full_res=True, padding=32),
     "only masked, padding 32"),
    ("masked-pad0-blur0-fill-128x96", "init-128", "mask-128", 128, 96, dict(full_res=True, padding=0, blur_x=0, blur_y=0, inpainting_fill=0),
     "only masked, padding 0, crop grown to 4:3 (expand_crop_region), fill"),
    ("masked-pad8-edge-nothing", "init-128", "edge-128", 96, 128, dict(full_res=True, padding=8, inpainting_fill=3),
     "mask box at the right edge: expand_crop_region shifts it back inside; 3:4 processing"),
    ("masked-corner-160x120", "init-160x120", "corner-160x120", 128, 128, dict(full_res=True, padding=32),
     "init 160x120, mask at the top-left corner, padding 32"),
    ("masked-blank-fallback", "init-128", "blank-128", 128, 128, dict(full_res=True, padding=32),
     "blank mask with only masked: falls back to plain img2img (no image_mask / overlay)"),
    ("masked-rgba-noround-pad32", "init-128", "rgba-alpha-128", 128, 128, dict(full_res=True, mask_round=False, padding=32),
     "RGBA mask alpha without threshold (grey levels), only masked"),
    ("masked-invert-pad8-fill", "init-96x72", "grey-96x72", 64, 64, dict(full_res=True, invert=True, padding=8, inpainting_fill=0),
     "inverted grey mask, only masked, padding 8, fill"),
    ("masked-rgb-mask-blur2x6", "init-160x120", "rgb-mask-160x120", 96, 96, dict(full_res=True, padding=16, blur_x=2, blur_y=6, inpainting_fill=2),
     "RGB mask, only masked, blur (2, 6), latent noise"),
]
APPLY_OVERLAY_CASES = ["whole-default", "whole-invert-blur0-fill", "masked-pad32", "masked-corner-160x120",
                       "masked-pad0-blur0-fill-128x96"]


def make_inputs(I, rng):
    init = Image.open(os.path.join(IMAGES, "init-128.png")).convert("RGB")
    mask = Image.open(os.path.join(IMAGES, "mask-128.png"))
    assert mask.mode == "L"
    I.add("init-128", init, "Tests/Fixtures/images/init-128.png (tools/make_test_images.py)")
    I.add("mask-128", mask, "Tests/Fixtures/images/mask-128.png: circle r 32 at (46, 50), 0/255")
    # blur masks
    I.add("circle-64x64", image_from(shapes_mask(64, 64, circles=[(30, 34, 17)]), "L"), "binary disc")
    I.add("noise-37x53", image_from(noise(rng, 37, 53), "L"), "uniform noise")
    I.add("shapes-128x96", image_from(shapes_mask(128, 96, rects=[(10, 8, 50, 40), (90, 60, 128, 96)],
                                                  circles=[(70, 50, 20)]), "L"), "binary rectangles + disc, one touching the corner")
    I.add("rect-20x12", image_from(shapes_mask(20, 12, rects=[(6, 3, 13, 9)]), "L"), "binary rectangle (for kernels wider than the image)")
    I.add("noise-1x1", image_from(noise(rng, 1, 1), "L"))
    I.add("noise-3x2", image_from(noise(rng, 3, 2), "L"))
    I.add("noise-5x9", image_from(noise(rng, 5, 9), "L"))
    I.add("bar-1x17", image_from(shapes_mask(1, 17, rects=[(0, 5, 1, 11)]), "L"), "width 1: binary bar")
    I.add("noise-23x1", image_from(noise(rng, 23, 1), "L"), "height 1")
    I.add("noise-64x64", image_from(noise(rng, 64, 64), "L"))
    # gaussian / convert / paste / composite
    I.add("rgba-noise-48x40", image_from(rgba_all_alpha(rng, 48, 40), "RGBA"), "noise colours, every alpha level")
    I.add("rgba-noise-7x5", image_from(noise(rng, 7, 5, 4), "RGBA"))
    holes = smooth_rgb(rng, 96, 72)
    a = 255 - np.maximum(shapes_mask(96, 72, circles=[(40, 30, 18)]), radial_grey(96, 72, 75, 55, 6, 16))
    I.add("rgba-holes-96x72", image_from(np.concatenate([holes, a[..., None]], axis=2), "RGBA"),
          "smooth colours; alpha 0 in a disc and a soft-edged spot (like inpaint.fill's masked image)")
    I.add("grey-noise-64x64", image_from(noise(rng, 64, 64), "L"))
    I.add("grey-1x1", image_from(noise(rng, 1, 1), "L"))
    I.add("grey-1x30", image_from(noise(rng, 1, 30), "L"))
    I.add("rgb-smooth-40x56", image_from(smooth_rgb(rng, 40, 56, grain=12.0), "RGB"))
    I.add("rgb-noise-3x2", image_from(noise(rng, 3, 2, 3), "RGB"))
    I.add("rgba-perm-16x16", image_from(rgba_all_alpha(rng, 16, 16), "RGBA"), "alpha = a permutation of 0..255")
    I.add("rgba-perm2-16x16", image_from(rgba_all_alpha(rng, 16, 16), "RGBA"), "alpha = a permutation of 0..255")
    raw = noise(rng, 16, 16, 4)
    raw[..., 3].flat[:256] = rng.permutation(256)
    I.add("rgba-raw-16x16", image_from(raw, "RGBA"),
          "arbitrary bytes, read as RGBa for the unpremultiply case (colour > alpha: CLIP8)")
    I.add("rgba-noise-64x64", image_from(rgba_all_alpha(rng, 64, 64), "RGBA"))
    I.add("rgba-noise2-64x64", image_from(rgba_all_alpha(rng, 64, 64), "RGBA"))
    I.add("rgba-smooth-40x24", image_from(rgba_all_alpha(rng, 40, 24, colour="smooth"), "RGBA"))
    I.add("grey-ramp-40x24", image_from(np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (24, 1)), "L"),
          "horizontal ramp 0..255")
    I.add("grey-perm-16x16", image_from(rng.permutation(256).astype(np.uint8).reshape(16, 16), "L"),
          "every mask level once")
    # fill
    I.add("rgb-smooth-64x64", image_from(smooth_rgb(rng, 64, 64), "RGB"))
    I.add("rgb-smooth-96x72", image_from(smooth_rgb(rng, 96, 72), "RGB"))
    I.add("rgb-smooth-40x40", image_from(smooth_rgb(rng, 40, 40), "RGB"))
    I.add("rect-40x40", image_from(shapes_mask(40, 40, rects=[(12, 8, 30, 27)]), "L"))
    I.add("blob-96x72", image_from(shapes_mask(96, 72, rects=[(50, 20, 80, 60)], circles=[(35, 36, 15)]), "L"))
    # resize
    I.add("grey-smooth-48x40", image_from(smooth_grey(rng, 48, 40, grain=8.0), "L"))
    I.add("rgb-smooth-40x30", image_from(smooth_rgb(rng, 40, 30, grain=8.0), "RGB"))
    I.add("rgb-noise-7x5", image_from(noise(rng, 7, 5, 3), "RGB"))
    # resize_image
    I.add("rgb-smooth-128x96", image_from(smooth_rgb(rng, 128, 96), "RGB"))
    I.add("rgb-smooth-160x128", image_from(smooth_rgb(rng, 160, 128), "RGB"))
    I.add("rgb-smooth-100x37", image_from(smooth_rgb(rng, 100, 37), "RGB"))
    I.add("grey-smooth-128x96", image_from(smooth_grey(rng, 128, 96), "L"))
    I.add("grey-smooth-37x100", image_from(smooth_grey(rng, 37, 100), "L"))
    # prepare
    I.add("init-160x120", image_from(smooth_rgb(rng, 160, 120), "RGB"))
    I.add("init-96x72", image_from(smooth_rgb(rng, 96, 72), "RGB"))
    I.add("init-100x37", image_from(smooth_rgb(rng, 100, 37), "RGB"))
    I.add("grey-160x120", image_from(radial_grey(160, 120, 96, 50, 14, 34), "L"), "grey-level soft spot")
    I.add("grey-96x72", image_from(radial_grey(96, 72, 40, 40, 8, 22), "L"), "grey-level soft spot")
    yy, xx = np.mgrid[0:128, 0:128]
    alpha = np.zeros((128, 128), np.uint8)
    alpha[(xx - 70) ** 2 + (yy - 60) ** 2 < 26 ** 2] = 255
    alpha[90:120, 10:50] = 128                       # exactly the threshold: not > 128 -> 0 when rounded
    alpha[90:120, 60:100] = 129
    alpha[10:30, 10:60] = np.linspace(0, 255, 50).round().astype(np.uint8)[None, :]
    col = np.zeros((128, 128, 3), np.uint8)
    col[..., 0] = 200
    col[..., 2] = (xx * 2).astype(np.uint8)
    I.add("rgba-alpha-128", image_from(np.concatenate([col, alpha[..., None]], axis=2), "RGBA"),
          "RGBA mask: alpha 255 disc, a 128 bar (not > 128), a 129 bar, a 0..255 ramp; colours irrelevant")
    opaque = np.zeros((72, 96, 4), np.uint8)
    opaque[..., 3] = 255
    opaque[20:50, 30:70, :3] = (255, 255, 255)
    opaque[40:60, 10:30, :3] = (200, 60, 30)
    I.add("rgba-opaque-96x72", image_from(opaque, "RGBA"), "RGBA, every alpha 255: white and red-brown rectangles")
    rgbm = np.zeros((72, 96, 3), np.uint8)
    rgbm[15:45, 20:60] = (255, 255, 255)
    rgbm[30:65, 50:85] = (40, 220, 90)
    I.add("rgb-mask-96x72", image_from(rgbm, "RGB"), "RGB mask: white and green rectangles (luma 155)")
    rgbm2 = np.zeros((120, 160, 3), np.uint8)
    rgbm2[40:80, 60:110] = (255, 255, 255)
    rgbm2[70:100, 100:140] = (250, 30, 30)
    I.add("rgb-mask-160x120", image_from(rgbm2, "RGB"), "RGB mask: white and red rectangles")
    I.add("mask-100x37", image_from(shapes_mask(100, 37, rects=[(30, 10, 70, 30)]), "L"))
    I.add("edge-128", image_from(shapes_mask(128, 128, rects=[(108, 50, 128, 70)]), "L"), "mask box at the right edge")
    I.add("corner-160x120", image_from(shapes_mask(160, 120, circles=[(6, 8, 14)]), "L"), "disc at the top-left corner")
    I.add("blank-128", image_from(np.zeros((128, 128), np.uint8), "L"), "all zero")


def run_cases(W, I, rng, ip):
    cases = []
    mism = []

    def case(c, model_ok=None):
        if model_ok is not None:
            c["model_identical"] = bool(model_ok)
            if not model_ok:
                mism.append(c["id"])
        cases.append(c)

    # --- 1. cv_blur / cv_blur_x --------------------------------------------------------------
    for name, pairs in CV_BLUR_CASES:
        m = I[name]
        for bx, by in pairs:
            cid = f"cv_blur-{name}-{bx}x{by}"
            out = ip.blur_mask(m, bx, by)
            cv2.ipp.setUseIPP(False)
            try:
                noipp = ip.blur_mask(m, bx, by)
            finally:
                cv2.ipp.setUseIPP(True)
            kx = 2 * int(2.5 * bx + 0.5) + 1 if bx > 0 else 0
            ky = 2 * int(2.5 * by + 0.5) + 1 if by > 0 else 0
            case({"id": cid, "kind": "cv_blur", "blur_x": bx, "blur_y": by, "ksize_x": kx, "ksize_y": ky,
                  "ipp_invariant": out.tobytes() == noipp.tobytes(),
                  "inputs": {"mask": I.rec(name)}, "outputs": {"out": W.png(f"{cid}-out.png", out)}},
                 np.array_equal(np.asarray(out), m_blur_mask(np.asarray(m), bx, by)))
    for name, bx in CV_BLUR_X_CASES:
        m = I[name]
        cid = f"cv_blur_x-{name}-{bx}"
        out = ip.blur_mask(m, bx, 0)
        case({"id": cid, "kind": "cv_blur_x", "blur_x": bx, "blur_y": 0, "ksize_x": 2 * int(2.5 * bx + 0.5) + 1,
              "ksize_y": 0, "doc": "the first (horizontal) pass alone of the cv_blur cases with this mask and blur_x",
              "inputs": {"mask": I.rec(name)}, "outputs": {"out": W.png(f"{cid}-out.png", out)}},
             np.array_equal(np.asarray(out), m_cv_blur_1d(np.asarray(m), bx, 1)))

    # --- 2. pil_gaussian -----------------------------------------------------------------------
    for spec, radii in PIL_GAUSSIAN_CASES:
        name, _, conv = spec.partition(":")
        src = I[name].convert(conv) if conv else I[name]
        tag = f"{name}-RGBa" if conv else name
        if conv:
            prem = W.png(f"pil_gaussian-{tag}-input.png", src)
        for r in radii:
            cid = f"pil_gaussian-{tag}-r{r}"
            out = src.filter(ImageFilter.GaussianBlur(r))
            fr = m_gaussian_box_radius(r) if r != 0 else None
            c = {"id": cid, "kind": "pil_gaussian", "radius": fl(r), "mode": src.mode, "passes": 3,
                 "box_radius": float(fr) if fr is not None else None,
                 "box_ww_fw": list(m_box_weights(fr)[1:]) if fr is not None else None,
                 "inputs": {"image": prem if conv else I.rec(name)},
                 "outputs": {"out": W.png(f"{cid}-out.png", out)}}
            if conv:
                c["inputs"]["image_rgba"] = I.rec(name)
                c["doc"] = "input = inputs.image_rgba.convert('RGBa') (stored as inputs.image)"
            case(c, np.array_equal(arr_of(out), m_gaussian_blur(arr_of(src), r)))

    # --- 3. pil_convert ------------------------------------------------------------------------
    for name in ("rgba-perm-16x16", "rgba-noise-48x40"):
        cid = f"pil_convert-{name}-RGBA-to-RGBa"
        out = I[name].convert("RGBa")
        case({"id": cid, "kind": "pil_convert", "from": "RGBA", "to": "RGBa", "inputs": {"image": I.rec(name)},
              "outputs": {"out": W.png(f"{cid}-out.png", out)}},
             np.array_equal(arr_of(out), m_premultiply(np.asarray(I[name]))))
    src = I["rgba-perm-16x16"].convert("RGBa")
    cid = "pil_convert-rgba-perm-16x16-premultiplied-RGBa-to-RGBA"
    inrec = W.png(f"{cid}-input.png", src)
    out = src.convert("RGBA")
    case({"id": cid, "kind": "pil_convert", "from": "RGBa", "to": "RGBA", "inputs": {"image": inrec},
          "doc": "round trip: the RGBa of pil_convert-rgba-perm-16x16-RGBA-to-RGBa back to RGBA",
          "outputs": {"out": W.png(f"{cid}-out.png", out)}},
         np.array_equal(arr_of(out), m_unpremultiply(arr_of(src))))
    raw = Image.frombytes("RGBa", I["rgba-raw-16x16"].size, I["rgba-raw-16x16"].tobytes())
    cid = "pil_convert-rgba-raw-16x16-RGBa-to-RGBA"
    out = raw.convert("RGBA")
    case({"id": cid, "kind": "pil_convert", "from": "RGBa", "to": "RGBA",
          "doc": "input = the raw bytes of in-rgba-raw-16x16.png read as RGBa (not a valid premultiplied image)",
          "inputs": {"image": dict(I.rec("rgba-raw-16x16"), mode="RGBa")},
          "outputs": {"out": W.png(f"{cid}-out.png", out)}},
         np.array_equal(arr_of(out), m_unpremultiply(arr_of(raw))))

    # --- 4. pil_paste_mask ---------------------------------------------------------------------
    for img, mask, canvas in [("rgba-perm-16x16", "grey-perm-16x16", None),
                              ("rgba-smooth-40x24", "grey-ramp-40x24", None),
                              ("rgba-noise-64x64", "grey-noise-64x64", None),
                              ("rgba-perm-16x16", "grey-perm-16x16", "rgba-perm2-16x16")]:
        cid = f"pil_paste_mask-{img}-{mask}" + (f"-on-{canvas}" if canvas else "")
        src = I[img].convert("RGBa")
        cv_ = (Image.frombytes("RGBa", I[canvas].size, I[canvas].tobytes()) if canvas
               else Image.new("RGBa", src.size))
        before = arr_of(cv_)
        cv_.paste(src, mask=I[mask])
        c = {"id": cid, "kind": "pil_paste_mask", "canvas": "raw bytes of inputs.canvas as RGBa" if canvas else "Image.new('RGBa', size) (zeros)",
             "doc": "canvas.paste(inputs.image.convert('RGBa'), mask=inputs.mask)",
             "inputs": {"image": I.rec(img), "mask": I.rec(mask)},
             "outputs": {"premultiplied": W.png(f"{cid}-premultiplied.png", src), "out": W.png(f"{cid}-out.png", cv_)}}
        if canvas:
            c["inputs"]["canvas"] = dict(I.rec(canvas), mode="RGBa")
        case(c, np.array_equal(arr_of(cv_), m_paste_L(before, arr_of(src), np.asarray(I[mask]))))

    # --- 5. pil_alpha_composite ----------------------------------------------------------------
    for base, over in [("rgba-perm2-16x16", "rgba-perm-16x16"), ("rgba-noise-64x64", "rgba-noise2-64x64"),
                       (None, "rgba-perm-16x16"), (None, "rgba-noise-48x40")]:
        cid = f"pil_alpha_composite-{base or 'zeros'}-{over}"
        b = I[base].copy() if base else Image.new("RGBA", I[over].size)
        before = np.asarray(b).copy()
        b.alpha_composite(I[over])
        c = {"id": cid, "kind": "pil_alpha_composite", "base": "inputs.base" if base else "Image.new('RGBA', size) (zeros)",
             "doc": "base.alpha_composite(inputs.over)", "inputs": {"over": I.rec(over)},
             "outputs": {"out": W.png(f"{cid}-out.png", b)}}
        if base:
            c["inputs"]["base"] = I.rec(base)
        case(c, np.array_equal(np.asarray(b), m_alpha_composite(before, np.asarray(I[over]))))

    # --- 6. fill -------------------------------------------------------------------------------
    blurred = {}
    for cid, img, mname, blur, stages in [
            ("fill-40x40-rect", "rgb-smooth-40x40", "rect-40x40", None, True),
            ("fill-64x64-circle", "rgb-smooth-64x64", "circle-64x64", None, True),
            ("fill-96x72-blurred", "rgb-smooth-96x72", "blob-96x72", (4, 4), False),
            ("fill-128-mask-128", "init-128", "mask-128", None, False),
            ("fill-128-mask-128-blurred", "init-128", "mask-128", (4, 4), False)]:
        m = I[mname]
        inputs = {"image": I.rec(img), "mask": I.rec(mname)}
        outputs = {}
        if blur:
            m = ip.blur_mask(m, *blur)
            key = (mname, blur)
            if key not in blurred:
                blurred[key] = W.png(f"{cid}-mask_blurred.png", m)
            outputs["mask_blurred"] = blurred[key]
        out = ip.fill(I[img], m)
        if stages:   # the intermediates of inpaint.fill, re-done step by step
            image = I[img]
            masked = Image.new("RGBa", image.size)
            masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(m.convert("L")))
            outputs["masked"] = W.png(f"{cid}-masked.png", masked)
            mod = Image.new("RGBA", image.size)
            for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
                bl = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
                outputs[f"blurred_r{radius}"] = W.png(f"{cid}-blurred_r{radius}.png", bl)
                for _ in range(repeats):
                    mod.alpha_composite(bl)
                outputs[f"composite_r{radius}"] = W.png(f"{cid}-composite_r{radius}.png", mod)
            assert mod.convert("RGB").tobytes() == out.tobytes()
        outputs["out"] = W.png(f"{cid}-out.png", out)
        case({"id": cid, "kind": "fill", "mask_blur": list(blur) if blur else None,
              "doc": "inpaint.fill(inputs.image, mask)" + (f", mask = inpaint.blur_mask(inputs.mask, {blur[0]}, {blur[1]}) "
                                                          "(outputs.mask_blurred)" if blur else ", mask = inputs.mask"),
              "inputs": inputs, "outputs": outputs},
             np.array_equal(np.asarray(out), m_fill(np.asarray(I[img]), np.asarray(m))))

    # --- 7. resize -----------------------------------------------------------------------------
    for name, (w, h), filt, box, note in RESIZE_CASES:
        im = I[name]
        btag = "" if box is None else "-box" + "_".join(f"{v:g}" for v in box)
        cid = f"resize-{name}-{filt.lower()}-{w}x{h}{btag}"
        out = im.resize((w, h), resample=RESAMPLE[filt], box=box)
        case({"id": cid, "kind": "resize", "size": [w, h], "resample": filt,
              "box": [float(v) for v in box] if box is not None else None, "mode": im.mode, "note": note,
              "passes": resize_passes(im.width, im.height, (w, h), box),
              "inputs": {"image": I.rec(name)}, "outputs": {"out": W.png(f"{cid}-out.png", out)}},
             np.array_equal(np.asarray(out), m_resize(np.asarray(im), im.mode, (w, h), filt, box)))

    # --- 8. resize_image -----------------------------------------------------------------------
    for name, mode, w, h in RESIZE_IMAGE_CASES:
        im = I[name]
        cid = f"resize_image-{name}-m{mode}-{w}x{h}"
        out = ip.resize_image(mode, im, w, h)
        case({"id": cid, "kind": "resize_image", "resize_mode": mode, "size": [w, h], "input_mode": im.mode,
              "doc": "inpaint.resize_image(resize_mode, inputs.image, w, h) (LANCZOS; modes 1/2 return RGB)",
              "inputs": {"image": I.rec(name)}, "outputs": {"out": W.png(f"{cid}-out.png", out)}})

    # --- 9. prepare ----------------------------------------------------------------------------
    prepared = {}
    for pid, init, mname, w, h, over, doc in PREPARE_CASES:
        args = dict(PREPARE_DEFAULTS, **over)
        cid = f"prepare-{pid}"
        r = ip.prepare(I[init], I[mname], w, h, **args)
        # the mask after create_binary_mask / invert / blur (the first three steps of prepare)
        m = ip.create_binary_mask(I[mname], args["mask_round"])
        if args["invert"]:
            m = ImageOps.invert(m)
        m = ip.blur_mask(m, args["blur_x"], args["blur_y"])
        outputs = {"mask_prepared": W.png(f"{cid}-mask_prepared.png", m)}
        for key in ("image", "latent_mask", "image_mask", "mask_for_overlay", "overlay"):
            if r[key] is not None:
                outputs[key] = W.png(f"{cid}-{key}.png", r[key])
        lma = None
        if r["latent_mask"] is not None:
            lma = ip.latent_mask_array(r["latent_mask"], h // 8, w // 8, args["mask_round"])
            outputs["latent_mask_array"] = W.npy(f"{cid}-latent_mask_array.npy", lma)
        c = {"id": cid, "kind": "prepare", "doc": doc, "width": w, "height": h, "args": args,
             "result": {"crop_region": list(r["crop_region"]) if r["crop_region"] else None,
                        "paste_to": list(r["paste_to"]) if r["paste_to"] else None,
                        "full_res": bool(r["full_res"]), "info": r["info"],
                        "none": [k for k in ("latent_mask", "image_mask", "mask_for_overlay", "overlay") if r[k] is None]},
             "inputs": {"init": I.rec(init), "mask": I.rec(mname)}, "outputs": outputs}
        case(c)
        prepared[pid] = (r, c)

    # --- 10. apply_overlay ---------------------------------------------------------------------
    for pid in APPLY_OVERLAY_CASES:
        r, pc = prepared[pid]
        w, h = pc["width"], pc["height"]
        cid = f"apply_overlay-{pid}"
        res = image_from(smooth_rgb(rng, w, h, grain=10.0), "RGB")
        rrec = W.png(f"{cid}-result.png", res)
        out = ip.apply_overlay(res, r["paste_to"], r["overlay"])
        case({"id": cid, "kind": "apply_overlay", "prepare_case": pc["id"],
              "paste_to": list(r["paste_to"]) if r["paste_to"] else None,
              "doc": "inpaint.apply_overlay(inputs.result, paste_to, inputs.overlay); result is the W x H "
                     "generated image (random here), overlay = the prepare case's overlay",
              "inputs": {"result": rrec, "overlay": pc["outputs"]["overlay"]},
              "outputs": {"out": W.png(f"{cid}-out.png", out)}})
    return cases, mism


def generate(out, ref):
    sys.path.insert(0, os.path.abspath(ref))
    import inpaint as ip  # noqa: E402  (the oracle's inpaint.py, from --ref)
    os.makedirs(out, exist_ok=True)
    cv2.setNumThreads(2)
    W = Writer(out)
    I = Inputs(W)
    rng = np.random.default_rng(20240725)
    make_inputs(I, rng)
    cases, mism = run_cases(W, I, rng, ip)
    counts = {}
    for c in cases:
        counts[c["kind"]] = counts.get(c["kind"], 0) + 1
    index = {
        "generator": "tools/make_inpaint_fixtures.py",
        "oracle": "REF/inpaint.py (A1111 1.10 modules/processing.py, masking.py, images.resize_image)",
        "versions": {"pillow": PIL.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "conventions": {
            "files": "PNG in the image's own mode (L, RGB, RGBA); mode 'RGBa' = premultiplied, stored as an "
                     "RGBA PNG of the raw bytes (Image.frombytes('RGBA', size, im.tobytes())); .npy = "
                     "little-endian float32",
            "sizes": "size = [width, height]; shape (npy) = [rows, cols]",
            "file_record": "{file, mode, size, sha256} (npy: {file, dtype, shape, sha256}); inputs are in-*.png, "
                           "shared between cases",
            "model_identical": "the numpy model in the script (the spec in tools/README.md) reproduces the "
                               "output bit for bit",
        },
        "counts": counts,
        "inputs": {k: v for k, v in I.recs.items()},
        "cases": cases,
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    return W, cases, mism


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref, with inpaint.py)")
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures", "inpaint"))
    ap.add_argument("--check", action="store_true", help="re-make into a temporary folder and compare")
    args = ap.parse_args()
    got = {"pillow": PIL.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    for k, v in MADE_WITH.items():
        if got[k] != v:
            print(f"warning: {k} {got[k]}, the fixtures were made with {v}", file=sys.stderr)
    out = os.path.normpath(args.out)
    if args.check:
        tmp = tempfile.mkdtemp(prefix="inpaint-fixtures-")
        try:
            generate(tmp, args.ref)
            return golden_common.compare_dirs(tmp, out, keep=("README.md",))
        finally:
            shutil.rmtree(tmp)
    if os.path.isdir(out):   # start clean (keep the hand-written README.md)
        for n in os.listdir(out):
            if n != "README.md" and (n.endswith(".png") or n.endswith(".npy") or n == "index.json"):
                os.remove(os.path.join(out, n))
    W, cases, mism = generate(out, args.ref)
    total = sum(W.files.values())
    counts = {}
    for c in cases:
        counts[c["kind"]] = counts.get(c["kind"], 0) + 1
    print(f"{len(W.files)} files, {total / 1024:.0f} KiB, {len(cases)} cases -> {out}")
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if mism:
        print("model differs on:", *mism, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
