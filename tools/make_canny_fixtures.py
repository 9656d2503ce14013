#!/usr/bin/env python3
"""Make the committed canny / control-map fixtures in Tests/Fixtures/canny/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_canny_fixtures.py [--out Tests/Fixtures/canny] [--check]

Needs numpy, Pillow and opencv-python-headless 5.0.0.93 (the fixtures were made on x86_64 with
AVX2, 2 cores; see tools/README.md "Canny / resize fixtures" for what the Swift port must
model). Everything goes through cv2 exactly as sd-webui-controlnet does (a faithful port of the
extension's code at commit EXT_COMMIT is below), and every output is written twice over when it
depends on Intel IPP: cv2 as shipped (IPP on, the default: INTER_CUBIC of uint8 images with
both sides >= 4 goes to IPP) and with cv2.ipp.setUseIPP(False) (OpenCV's own C++ code, which
tools/opencv_model.py reproduces bit for bit). Files that are identical in both are written once.

Writes (all PNG: L for single channel, RGB, RGBA):
  src-<name>.png                 6 deterministic source images (numpy only, except d/photo,
                                 which uses cv2.GaussianBlur; the PNG is the source of truth)
  src-<name>-hwc3.png            HWC3 of the RGBA source (composite on white, float32, truncated)
  canny-<name>-l<lo>-h<hi>.png   raw cv2.Canny(HWC3(src), lo, hi) (aperture 3, L1)
  pre-<name>-r<res>-{resized,padded,canny}[.noipp].png
                                 the canny preprocessor (utils.resize_image_with_pad +
                                 PreprocessorCanny): cv2.resize output before the pad, the
                                 edge-padded input of cv2.Canny, the edge map after the cut
                                 (single channel; the extension then makes it RGB, 3 equal
                                 channels)
  resize-<name>-<interp>-<w>x<h>[.noipp].png
                                 plain cv2.resize of HWC3(src)
  hq-<case>-*.png                high_quality_resize of a binary canny map, every intermediate
  dmp-<case>-<mode>[.noipp].png  detectmap_proc (Just Resize, Crop and Resize, Resize and Fill)
  index.json                     every case: op, source, params, interpolation used, shapes,
                                 files with sha256, whether tools/opencv_model.py reproduces it

--check re-runs and only compares with the committed files (exit 1 on any difference).
"""
import argparse
import hashlib
import io
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opencv_model as M  # noqa: E402

EXT_REPO = "Mikubill/sd-webui-controlnet"
EXT_COMMIT = "56cec5b2958edf3b1807b7e7b2b1b5186dbd2f81"   # 2024-07-25, "fix version parsing (#3016)"

INTERP_NAMES = {cv2.INTER_NEAREST: "INTER_NEAREST", cv2.INTER_LINEAR: "INTER_LINEAR",
                cv2.INTER_CUBIC: "INTER_CUBIC", cv2.INTER_AREA: "INTER_AREA"}


# =============================================================================================
# The extension, ported as written (annotator/util.py, scripts/utils.py,
# scripts/preprocessor/model_free_preprocessors.py, scripts/lvminthin.py,
# scripts/controlnet.py Script.detectmap_proc). Only change: optional `trace` dicts that
# record intermediates, and the torch tensor of detectmap_proc is not built.
# =============================================================================================

def HWC3(x):
    assert x.dtype == np.uint8
    if x.ndim == 2:
        x = x[:, :, None]
    assert x.ndim == 3
    H, W, C = x.shape
    assert C == 1 or C == 3 or C == 4
    if C == 3:
        return x
    if C == 1:
        return np.concatenate([x, x, x], axis=2)
    if C == 4:
        color = x[:, :, 0:3].astype(np.float32)
        alpha = x[:, :, 3:4].astype(np.float32) / 255.0
        y = color * alpha + 255.0 * (1.0 - alpha)
        y = y.clip(0, 255).astype(np.uint8)
        return y


def pad64(x):
    return int(np.ceil(float(x) / 64.0) * 64 - x)


def safer_memory(x):
    # Fix many MAC/AMD problems
    return np.ascontiguousarray(x.copy()).copy()


def resize_image_with_pad(img, resolution, trace=None):
    # Convert greyscale image to RGB.
    if img.ndim == 2:
        img = img[:, :, None]
        img = np.concatenate([img, img, img], axis=2)

    H_raw, W_raw, _ = img.shape
    k = float(resolution) / float(min(H_raw, W_raw))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    H_target = int(np.round(float(H_raw) * k))
    W_target = int(np.round(float(W_raw) * k))
    img = cv2.resize(img, (W_target, H_target), interpolation=interpolation)
    if trace is not None:
        trace.update(k=k, interpolation=INTERP_NAMES[interpolation], H_target=H_target,
                     W_target=W_target, resized=img.copy())
    H_pad, W_pad = pad64(H_target), pad64(W_target)
    img_padded = np.pad(img, [[0, H_pad], [0, W_pad], [0, 0]], mode="edge")

    def remove_pad(x):
        return safer_memory(x[:H_target, :W_target])

    return safer_memory(img_padded), remove_pad


def preprocessor_canny(input_image, resolution, slider_1=None, slider_2=None, trace=None):
    """PreprocessorCanny.__call__ (the caller already applied HWC3 to the input)."""
    input_image, remove_pad = resize_image_with_pad(input_image, resolution, trace)
    if trace is not None:
        trace["padded"] = input_image.copy()
    canny_image = cv2.cvtColor(
        cv2.Canny(input_image, int(slider_1), int(slider_2)), cv2.COLOR_GRAY2RGB
    )
    return remove_pad(canny_image)


def get_unique_axis0(data):
    arr = np.asanyarray(data)
    idxs = np.lexsort(arr.T)
    arr = arr[idxs]
    unique_idxs = np.empty(len(arr), dtype=np.bool_)
    unique_idxs[:1] = True
    unique_idxs[1:] = np.any(arr[:-1, :] != arr[1:, :], axis=-1)
    return arr[unique_idxs]


lvmin_kernels_raw = [
    np.array([
        [-1, -1, -1],
        [0, 1, 0],
        [1, 1, 1]
    ], dtype=np.int32),
    np.array([
        [0, -1, -1],
        [1, 1, -1],
        [0, 1, 0]
    ], dtype=np.int32)
]

lvmin_kernels = []
lvmin_kernels += [np.rot90(x, k=0, axes=(0, 1)) for x in lvmin_kernels_raw]
lvmin_kernels += [np.rot90(x, k=1, axes=(0, 1)) for x in lvmin_kernels_raw]
lvmin_kernels += [np.rot90(x, k=2, axes=(0, 1)) for x in lvmin_kernels_raw]
lvmin_kernels += [np.rot90(x, k=3, axes=(0, 1)) for x in lvmin_kernels_raw]

lvmin_prunings_raw = [
    np.array([
        [-1, -1, -1],
        [-1, 1, -1],
        [0, 0, -1]
    ], dtype=np.int32),
    np.array([
        [-1, -1, -1],
        [-1, 1, -1],
        [-1, 0, 0]
    ], dtype=np.int32)
]

lvmin_prunings = []
lvmin_prunings += [np.rot90(x, k=0, axes=(0, 1)) for x in lvmin_prunings_raw]
lvmin_prunings += [np.rot90(x, k=1, axes=(0, 1)) for x in lvmin_prunings_raw]
lvmin_prunings += [np.rot90(x, k=2, axes=(0, 1)) for x in lvmin_prunings_raw]
lvmin_prunings += [np.rot90(x, k=3, axes=(0, 1)) for x in lvmin_prunings_raw]


def remove_pattern(x, kernel):
    objects = cv2.morphologyEx(x, cv2.MORPH_HITMISS, kernel)
    objects = np.where(objects > 127)
    x[objects] = 0
    return x, objects[0].shape[0] > 0


def thin_one_time(x, kernels):
    y = x
    is_done = True
    for k in kernels:
        y, has_update = remove_pattern(y, k)
        if has_update:
            is_done = False
    return y, is_done


def lvmin_thin(x, prunings=True, trace=None):
    y = x
    for i in range(32):
        y, is_done = thin_one_time(y, lvmin_kernels)
        if is_done:
            break
    if trace is not None:
        trace["thin_passes"] = i + 1
    if prunings:
        y, _ = thin_one_time(y, lvmin_prunings)
    return y


def nake_nms(x):
    f1 = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=np.uint8)
    f2 = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.uint8)
    f3 = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.uint8)
    f4 = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.uint8)
    y = np.zeros_like(x)
    for f in [f1, f2, f3, f4]:
        np.putmask(y, cv2.dilate(x, kernel=f) == x, x)
    return y


def high_quality_resize(x, size, trace=None):
    # Written by lvmin
    # Super high-quality control map up-scaling, considering binary, seg, and one-pixel edges

    inpaint_mask = None
    if x.ndim == 3 and x.shape[2] == 4:
        inpaint_mask = x[:, :, 3]
        x = x[:, :, 0:3]

    if x.shape[0] != size[1] or x.shape[1] != size[0]:
        new_size_is_smaller = (size[0] * size[1]) < (x.shape[0] * x.shape[1])
        new_size_is_bigger = (size[0] * size[1]) > (x.shape[0] * x.shape[1])
        unique_color_count = len(get_unique_axis0(x.reshape(-1, x.shape[2])))
        is_one_pixel_edge = False
        is_binary = False
        if unique_color_count == 2:
            is_binary = np.min(x) < 16 and np.max(x) > 240
            if is_binary:
                xc = x
                xc = cv2.erode(xc, np.ones(shape=(3, 3), dtype=np.uint8), iterations=1)
                xc = cv2.dilate(xc, np.ones(shape=(3, 3), dtype=np.uint8), iterations=1)
                one_pixel_edge_count = np.where(xc < x)[0].shape[0]
                all_edge_count = np.where(x > 127)[0].shape[0]
                is_one_pixel_edge = one_pixel_edge_count * 2 > all_edge_count
                if trace is not None:
                    trace.update(opened=xc.copy(), one_pixel_edge_count=int(one_pixel_edge_count),
                                 all_edge_count=int(all_edge_count))

        if 2 < unique_color_count < 200:
            interpolation = cv2.INTER_NEAREST
        elif new_size_is_smaller:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_CUBIC  # Must be CUBIC because we now use nms. NEVER CHANGE THIS

        y = cv2.resize(x, size, interpolation=interpolation)
        if trace is not None:
            trace.update(unique_color_count=int(unique_color_count), is_binary=bool(is_binary),
                         is_one_pixel_edge=bool(is_one_pixel_edge),
                         new_size_is_smaller=bool(new_size_is_smaller),
                         new_size_is_bigger=bool(new_size_is_bigger),
                         interpolation=INTERP_NAMES[interpolation], resized=y.copy())
        if inpaint_mask is not None:
            inpaint_mask = cv2.resize(inpaint_mask, size, interpolation=interpolation)

        if is_binary:
            y = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
            if trace is not None:
                trace["mean"] = y.copy()
            if is_one_pixel_edge:
                y = nake_nms(y)
                if trace is not None:
                    trace["nms"] = y.copy()
                t, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                if trace is not None:
                    trace.update(otsu_threshold=float(t), otsu=y.copy())
                y = lvmin_thin(y, prunings=new_size_is_bigger, trace=trace)
            else:
                t, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                if trace is not None:
                    trace.update(otsu_threshold=float(t), otsu=y.copy())
            if trace is not None:
                trace["thin"] = y.copy()
            y = np.stack([y] * 3, axis=2)
    else:
        y = x

    if inpaint_mask is not None:
        inpaint_mask = (inpaint_mask > 127).astype(np.float32) * 255.0
        inpaint_mask = inpaint_mask[:, :, None].clip(0, 255).astype(np.uint8)
        y = np.concatenate([y, inpaint_mask], axis=2)

    return y


def detectmap_proc(detected_map, module, resize_mode, h, w, trace=None):
    """Script.detectmap_proc; returns the detected map (the extension also returns
    get_pytorch_control(detected_map) = float(map) / 255, [1, C, h, w])."""
    if 'inpaint' in module:
        detected_map = detected_map.astype(np.float32)
    else:
        detected_map = HWC3(detected_map)

    def safe_numpy(x):
        y = x
        y = y.copy()
        y = np.ascontiguousarray(y)
        y = y.copy()
        return y

    if resize_mode == "Just Resize":      # ResizeMode.RESIZE
        detected_map = high_quality_resize(detected_map, (w, h), trace)
        detected_map = safe_numpy(detected_map)
        return detected_map

    old_h, old_w, _ = detected_map.shape
    old_w = float(old_w)
    old_h = float(old_h)
    k0 = float(h) / old_h
    k1 = float(w) / old_w

    safeint = lambda x: int(np.round(x))

    if resize_mode == "Resize and Fill":  # ResizeMode.OUTER_FIT
        k = min(k0, k1)
        borders = np.concatenate([detected_map[0, :, :], detected_map[-1, :, :], detected_map[:, 0, :], detected_map[:, -1, :]], axis=0)
        high_quality_border_color = np.median(borders, axis=0).astype(detected_map.dtype)
        if len(high_quality_border_color) == 4:
            # Inpaint hijack
            high_quality_border_color[3] = 255
        high_quality_background = np.tile(high_quality_border_color[None, None], [h, w, 1])
        detected_map = high_quality_resize(detected_map, (safeint(old_w * k), safeint(old_h * k)), trace)
        new_h, new_w, _ = detected_map.shape
        pad_h = max(0, (h - new_h) // 2)
        pad_w = max(0, (w - new_w) // 2)
        high_quality_background[pad_h:pad_h + new_h, pad_w:pad_w + new_w] = detected_map
        detected_map = high_quality_background
        detected_map = safe_numpy(detected_map)
        if trace is not None:
            trace.update(k=k, border_color=[int(v) for v in high_quality_border_color],
                         new_w=new_w, new_h=new_h, pad_w=pad_w, pad_h=pad_h)
        return detected_map
    else:                                  # ResizeMode.INNER_FIT ("Crop and Resize")
        k = max(k0, k1)
        detected_map = high_quality_resize(detected_map, (safeint(old_w * k), safeint(old_h * k)), trace)
        new_h, new_w, _ = detected_map.shape
        pad_h = max(0, (new_h - h) // 2)
        pad_w = max(0, (new_w - w) // 2)
        detected_map = detected_map[pad_h:pad_h+h, pad_w:pad_w+w]
        detected_map = safe_numpy(detected_map)
        if trace is not None:
            trace.update(k=k, new_w=new_w, new_h=new_h, pad_w=pad_w, pad_h=pad_h)
        return detected_map


# =============================================================================================
# Source images
# =============================================================================================

def _grid(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float64), xx.astype(np.float64)


def src_shapes():
    """(a) 96x80 RGB: dark background, a disc, two rectangles, a 1-px diagonal line."""
    h, w = 80, 96
    yy, xx = _grid(h, w)
    im = np.zeros((h, w, 3), np.uint8)
    im[:] = (20, 24, 28)
    im[(xx - 34) ** 2 + (yy - 40) ** 2 < 22 ** 2] = (220, 80, 40)
    im[8:30, 58:90] = (40, 160, 220)
    im[48:72, 52:81] = (200, 200, 60)
    for x in range(4, 92):                      # y = 76 - 0.8 (x - 4), rounded half up
        y = int(np.floor(76 - 0.8 * (x - 4) + 0.5))
        im[y, x] = (255, 255, 255)
    return im


def src_gradient():
    """(b) 70x53 RGB: smooth gradients + N(0, 2.5) noise (numpy default_rng(1234))."""
    h, w = 53, 70
    yy, xx = _grid(h, w)
    r = 40 + 150 * xx / (w - 1)
    g = 30 + 180 * yy / (h - 1)
    b = 128 + 60 * np.sin(2 * np.pi * (xx + yy) / 45.0)
    im = np.stack([r, g, b], axis=2) + np.random.default_rng(1234).normal(0, 2.5, (h, w, 3))
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def src_rgba():
    """(c) 64x64 RGBA: colour gradient; alpha 0 (hidden colour) top-left, an alpha ramp,
    an opaque disc and a half-transparent bar."""
    h, w = 64, 64
    yy, xx = _grid(h, w)
    rgb = np.stack([60 + 3 * xx, 200 - 2 * yy, 90 + xx + yy], axis=2)
    a = np.clip(4 * xx, 0, 255)                 # ramp 0 .. 252
    a[(xx - 40) ** 2 + (yy - 38) ** 2 < 14 ** 2] = 255
    a[50:58, 4:60] = 128
    a[:16, :16] = 0
    im = np.concatenate([rgb, a[:, :, None]], axis=2)
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def src_photo():
    """(d) 128x96 RGB 'photo': uniform noise (default_rng(7)) blurred with cv2.GaussianBlur
    sigma 2.5, contrast-stretched, with a disc, a tilted bar and a line, + N(0, 1.5) grain."""
    h, w = 96, 128
    rng = np.random.default_rng(7)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2.5)
    im = (base.astype(np.float64) - base.mean()) * 3.0 + 128
    yy, xx = _grid(h, w)
    im[(xx - 90) ** 2 + (yy - 30) ** 2 < 16 ** 2] = (230, 210, 60)
    bar = np.abs((xx - 40) * 0.5 + (yy - 60) * 0.866) < 6
    bar &= np.abs((xx - 40) * 0.866 - (yy - 60) * 0.5) < 30
    im[bar] = (30, 60, 160)
    im[np.abs(yy - (0.3 * xx + 70)) < 0.7] = (250, 250, 250)
    im = im + rng.normal(0, 1.5, (h, w, 3))
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def src_checker():
    """(e) 40x40 RGB: flat areas, a 1-px checkerboard, a 2-px checkerboard, and a patch whose
    channels have equal-magnitude edges of different direction/polarity (channel ties)."""
    h, w = 40, 40
    yy, xx = np.mgrid[0:h, 0:w]
    im = np.zeros((h, w, 3), np.uint8)
    im[:] = 128
    im[:, 20:] = 60
    c1 = ((yy + xx) % 2 == 0)
    reg = (yy >= 3) & (yy < 17) & (xx >= 3) & (xx < 17)
    im[reg & c1] = 255
    im[reg & ~c1] = 0
    c2 = (((yy // 2) + (xx // 2)) % 2 == 0)
    reg2 = (yy >= 4) & (yy < 16) & (xx >= 24) & (xx < 36)
    im[reg2 & c2] = 200
    im[reg2 & ~c2] = 40
    reg3 = (yy >= 22) & (yy < 38) & (xx >= 4) & (xx < 36)
    r = np.where(xx >= 20, 200, 50)             # R: vertical edge at x = 20
    g = np.where(yy >= 30, 200, 50)             # G: horizontal edge at y = 30, same contrast
    b = np.where(xx >= 20, 50, 200)             # B: R's edge with the opposite polarity
    im[reg3] = np.stack([r, g, b], axis=2)[reg3]
    return im


def src_round():
    """(f) 75x50 RGB: for processor_res 51 / 47, where W * k = 76.5 / 70.5 exactly and the
    extension's np.round rounds half to even (76 / 70, not 77 / 71)."""
    h, w = 50, 75
    yy, xx = _grid(h, w)
    im = np.zeros((h, w, 3), np.uint8)
    im[:] = (90, 90, 200)
    im[(xx - 25) ** 2 + (yy - 25) ** 2 < 15 ** 2] = (250, 240, 20)
    im[10:40, 45:68] = (10, 120, 30)
    return im


SOURCES = [("a-shapes-96x80", src_shapes), ("b-gradient-70x53", src_gradient),
           ("c-rgba-64x64", src_rgba), ("d-photo-128x96", src_photo),
           ("e-checker-40x40", src_checker), ("f-round-75x50", src_round)]

CANNY_THRESHOLDS = [(100, 200), (50, 150), (1, 255), (20, 40), (200, 255), (1, 1), (150, 50)]

# processor_res per source: identity (short side), 2x (INTER_CUBIC), non-integer enlarge
# (INTER_CUBIC), integer shrink (INTER_AREA fast path where both sides divide), non-integer
# shrink (INTER_AREA general path). Below the UI minimum 64 on purpose (small fixtures):
# the functions themselves take any resolution.
PRE_RES = {
    "a-shapes-96x80": [80, 160, 110, 40, 20, 57],
    "b-gradient-70x53": [53, 106, 75, 26, 40],
    "c-rgba-64x64": [64, 128, 90, 32, 45],
    "d-photo-128x96": [96, 192, 132, 48, 70],
    "e-checker-40x40": [40, 80, 55, 20, 27],
    "f-round-75x50": [50, 51, 47],
}

# plain cv2.resize cases: (source, w, h, interpolation, note); sources are HWC3(src)
RESIZE_CASES = [
    ("a-shapes-96x80", 48, 40, "AREA", "integer 2x2: (sum + 2) >> 2"),
    ("a-shapes-96x80", 24, 20, "AREA", "integer 4x4: rint(sum * float(1/16))"),
    ("a-shapes-96x80", 48, 20, "AREA", "integer 2x4: rint(sum * float(1/8))"),
    ("d-photo-128x96:crop126", 42, 32, "AREA", "integer 3x3 (126x96 crop): rint(sum * float(1/9))"),
    ("d-photo-128x96", 93, 70, "AREA", "fractional shrink, general float path"),
    ("b-gradient-70x53", 41, 31, "AREA", "fractional shrink, odd sizes"),
    ("b-gradient-70x53", 33, 53, "AREA", "shrink x, same height: general path (scale_y = 1)"),
    ("a-shapes-96x80", 61, 80, "AREA", "shrink x only, scale_y = 1"),
    ("b-gradient-70x53", 45, 90, "AREA", "shrink x, enlarge y: bilinear area_mode fallback"),
    ("e-checker-40x40", 57, 51, "AREA", "enlarge both: bilinear area_mode fallback"),
    ("a-shapes-96x80", 192, 160, "CUBIC", "exact 2x enlarge"),
    ("b-gradient-70x53", 101, 77, "CUBIC", "fractional enlarge, odd sizes"),
    ("e-checker-40x40", 67, 67, "CUBIC", "fractional enlarge of a 1-px checkerboard"),
    ("d-photo-128x96", 64, 48, "CUBIC", "exact 2x shrink"),
    ("d-photo-128x96", 93, 70, "CUBIC", "fractional shrink"),
    ("b-gradient-70x53", 90, 40, "CUBIC", "enlarge x, shrink y"),
    ("e-checker-40x40", 3, 40, "CUBIC", "output width 3 (IPP is used only when all sides >= 4)"),
    ("a-shapes-96x80", 130, 107, "NEAREST", "fractional enlarge"),
    ("a-shapes-96x80", 192, 160, "NEAREST", "exact 2x enlarge"),
    ("d-photo-128x96", 93, 70, "NEAREST", "fractional shrink"),
    ("b-gradient-70x53", 91, 31, "NEAREST", "enlarge x, shrink y; x = 39, 65, 78: floor(x * (1/(91/70))) = "
                                            "29, 49, 59 (cv2), not x * 70 // 91 = 30, 50, 60"),
    ("e-checker-40x40", 52, 52, "NEAREST", "13/10 enlarge; x = y = 39: floor(39 * (1/(52/40))) = "
                                           "floor(29.999999999999996) = 29 (cv2), not 39 * 40 // 52 = 30"),
]

HQ_CASES = [  # binary canny map of a-shapes-96x80 (processor_res 80, 100/200) resized
    ("up-128x104", 128, 104),
    ("down-64x56", 64, 56),
]

DMP_CASES = [  # (case, source map, module, target w, h)
    ("canny-a-to-128x96", "canny:a-shapes-96x80", "canny", 128, 96),
    ("canny-a-to-64x64", "canny:a-shapes-96x80", "canny", 64, 64),
    ("photo-d-to-176x120", "d-photo-128x96", "none", 176, 120),
    ("shapes-a-to-128x96", "a-shapes-96x80", "none", 128, 96),
]
RESIZE_MODES = ["Just Resize", "Crop and Resize", "Resize and Fill"]
MODE_SLUG = {"Just Resize": "just", "Crop and Resize": "crop", "Resize and Fill": "fill"}


# =============================================================================================
# Writing
# =============================================================================================

def png_bytes(arr):
    arr = np.ascontiguousarray(arr)
    mode = {2: "L"}.get(arr.ndim) or {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", optimize=False, compress_level=9)
    data = buf.getvalue()
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(back, arr), "PNG round trip"
    return data


class Writer:
    def __init__(self, out, check):
        self.out, self.check = out, check
        self.files = {}
        self.by_sha = {}
        self.mismatch = []

    def put(self, name, arr, **meta):
        data = png_bytes(arr)
        sha = hashlib.sha256(data).hexdigest()
        if sha in self.by_sha:       # same pixels already written (e.g. padded == resized)
            rec = dict(self.by_sha[sha], name=name)
            rec.pop("stage", None)
            rec.update(meta)
            return rec
        path = os.path.join(self.out, name)
        if self.check:
            old = open(path, "rb").read() if os.path.exists(path) else None
            if old is None or not np.array_equal(np.asarray(Image.open(io.BytesIO(old))), arr):
                self.mismatch.append(name)
        else:
            with open(path, "wb") as f:
                f.write(data)
        arr = np.asarray(arr)
        rec = {"file": name, "sha256": sha, "shape": list(arr.shape)}
        rec.update(meta)
        self.files[name] = rec
        self.by_sha[sha] = rec
        return rec

    def put_pair(self, stem, ipp_arr, noipp_arr, **meta):
        """IPP-on result as <stem>.png; the IPP-off one as <stem>.noipp.png only if it differs."""
        same = np.array_equal(ipp_arr, noipp_arr)
        recs = [self.put(stem + ".png", ipp_arr, cv2_ipp="both" if same else True, **meta)]
        if not same:
            recs.append(self.put(stem + ".noipp.png", noipp_arr, cv2_ipp=False, **meta))
        return recs


def run_both(fn):
    """Run fn() with cv2's IPP on (default) and off; return (on, off)."""
    cv2.ipp.setUseIPP(True)
    on = fn()
    cv2.ipp.setUseIPP(False)
    try:
        off = fn()
    finally:
        cv2.ipp.setUseIPP(True)
    return on, off


def model_resize(img, w, h, interp):
    if interp == "AREA":
        return M.resize_area(img, w, h)
    if interp == "NEAREST":
        return M.resize_nearest(img, w, h)
    return M.resize_cubic(img, w, h, vec=(8, False))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "Tests", "Fixtures", "canny"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    if cv2.__version__ != "5.0.0":
        print(f"warning: cv2 {cv2.__version__}, the fixtures were made with 5.0.0", file=sys.stderr)
    cv2.setNumThreads(2)
    W = Writer(out, args.check)
    cases = []
    src = {}

    # --- sources ---------------------------------------------------------------------------
    for name, fn in SOURCES:
        im = fn()
        rec = W.put(f"src-{name}.png", im)
        src[name] = HWC3(im)
        case = {"id": f"src-{name}", "op": "source", "doc": fn.__doc__.strip(), "outputs": [rec]}
        if im.shape[2] == 4:
            case["outputs"].append(W.put(f"src-{name}-hwc3.png", src[name], op="HWC3"))
        cases.append(case)
    src["d-photo-128x96:crop126"] = np.ascontiguousarray(src["d-photo-128x96"][:, :126])

    # --- raw cv2.Canny ---------------------------------------------------------------------
    for name, _ in SOURCES:
        for lo, hi in CANNY_THRESHOLDS:
            e = cv2.Canny(src[name], lo, hi)
            e_off = run_both(lambda: cv2.Canny(src[name], lo, hi))[1]
            assert np.array_equal(e, e_off)
            rec = W.put(f"canny-{name}-l{lo}-h{hi}.png", e)
            cases.append({"id": f"canny-{name}-l{lo}-h{hi}", "op": "cv2.Canny",
                          "source": f"src-{name}.png" + (" (HWC3)" if name.startswith("c-") else ""),
                          "params": {"threshold1": lo, "threshold2": hi, "apertureSize": 3,
                                     "L2gradient": False},
                          "ipp_invariant": True,
                          "model_identical": bool(np.array_equal(M.canny(src[name], lo, hi), e)),
                          "outputs": [rec]})

    # --- preprocessor ----------------------------------------------------------------------
    for name, _ in SOURCES:
        for res in PRE_RES[name]:
            def run():
                t = {}
                d = preprocessor_canny(src[name], res, 100, 200, trace=t)
                return t, d
            (t_on, d_on), (t_off, d_off) = run_both(run)
            stem = f"pre-{name}-r{res}"
            outs = []
            outs += W.put_pair(f"{stem}-resized", t_on["resized"], t_off["resized"], stage="resized")
            outs += W.put_pair(f"{stem}-padded", t_on["padded"], t_off["padded"], stage="padded")
            outs += W.put_pair(f"{stem}-canny", d_on[:, :, 0], d_off[:, :, 0], stage="canny")
            h0, w0 = src[name].shape[:2]
            model_rs = (M.resize_area(src[name], t_on["W_target"], t_on["H_target"])
                        if t_on["interpolation"] == "INTER_AREA" else
                        M.resize_cubic(src[name], t_on["W_target"], t_on["H_target"], vec=(8, False)))
            cases.append({
                "id": stem, "op": "preprocessor_canny",
                "source": f"src-{name}.png" + (" (HWC3)" if name.startswith("c-") else ""),
                "params": {"processor_res": res, "low": 100, "high": 200,
                           "k": t_on["k"], "interpolation": t_on["interpolation"],
                           "source_hw": [h0, w0], "resized_hw": [t_on["H_target"], t_on["W_target"]],
                           "padded_hw": list(t_on["padded"].shape[:2])},
                "ipp_invariant": bool(np.array_equal(d_on, d_off) and np.array_equal(t_on["resized"], t_off["resized"])),
                "model_identical_noipp": {
                    "resized": bool(np.array_equal(model_rs, t_off["resized"])),
                    "canny_of_padded": bool(np.array_equal(M.canny(t_off["padded"], 100, 200)[:t_on["H_target"], :t_on["W_target"]], d_off[:, :, 0]))},
                "outputs": outs})

    # --- plain resize ----------------------------------------------------------------------
    flags = {"AREA": cv2.INTER_AREA, "CUBIC": cv2.INTER_CUBIC, "NEAREST": cv2.INTER_NEAREST}
    for name, w, h, interp, note in RESIZE_CASES:
        im = src[name]
        on, off = run_both(lambda: cv2.resize(im, (w, h), interpolation=flags[interp]))
        slug = name.replace(":", "-")
        stem = f"resize-{slug}-{interp.lower()}-{w}x{h}"
        outs = W.put_pair(stem, on, off)
        sh, sw = im.shape[:2]
        fast, ix, iy = M.area_is_fast(sw, sh, w, h)
        path = interp
        if interp == "AREA":
            path = ("AREA fast (2x2 integer)" if fast and ix == 2 and iy == 2 else
                    "AREA fast (integer, float scale)" if fast else
                    "AREA general" if (sw / w >= 1 and sh / h >= 1) else "AREA -> bilinear area_mode")
        cases.append({"id": stem, "op": "cv2.resize", "note": note,
                      "source": f"src-{name.split(':')[0]}.png" + (" [:, :126]" if name.endswith("crop126") else ""),
                      "params": {"interpolation": "INTER_" + interp, "dsize_wh": [w, h],
                                 "source_hw": [sh, sw], "path": path},
                      "ipp_invariant": bool(np.array_equal(on, off)),
                      "model_identical_noipp": bool(np.array_equal(model_resize(im, w, h, interp), off)),
                      "outputs": outs})

    # --- high_quality_resize of a binary canny map -----------------------------------------
    cmap = preprocessor_canny(src["a-shapes-96x80"], 80, 100, 200)           # 80x96x3, 0/255
    rec = W.put("hq-input-canny-a-shapes-96x80.png", cmap[:, :, 0])
    cases.append({"id": "hq-input", "op": "preprocessor_canny", "source": "src-a-shapes-96x80.png",
                  "params": {"processor_res": 80, "low": 100, "high": 200},
                  "doc": "the binary map used by the hq-* and dmp-canny-* cases (3 equal channels)",
                  "outputs": [rec]})
    for case, w, h in HQ_CASES:
        (y_on, t_on), (y_off, t_off) = run_both(lambda: (lambda t: (high_quality_resize(cmap.copy(), (w, h), t), t))({}))
        outs = []
        for key in ("resized", "mean", "nms", "otsu", "thin"):
            if key in t_on:
                a_on, a_off = t_on[key], t_off[key]
                if a_on.ndim == 3:
                    assert np.all(a_on == a_on[:, :, :1]) and np.all(a_off == a_off[:, :, :1])
                    a_on, a_off = a_on[:, :, 0], a_off[:, :, 0]
                outs += W.put_pair(f"hq-{case}-{key}", a_on, a_off, stage=key)
        assert np.all(y_on == y_on[:, :, :1])
        outs += W.put_pair(f"hq-{case}-final", y_on[:, :, 0], y_off[:, :, 0], stage="final (3 equal channels)")
        info = {k: v for k, v in t_on.items() if not isinstance(v, np.ndarray)}
        info_off = {k: v for k, v in t_off.items() if not isinstance(v, np.ndarray)}
        cases.append({"id": f"hq-{case}", "op": "high_quality_resize",
                      "source": "hq-input-canny-a-shapes-96x80.png (as 3 equal channels)",
                      "params": {"size_wh": [w, h]}, "trace": info, "trace_noipp": info_off,
                      "ipp_invariant": bool(np.array_equal(y_on, y_off)), "outputs": outs})

    # --- detectmap_proc --------------------------------------------------------------------
    for case, srcname, module, w, h in DMP_CASES:
        m = cmap if srcname.startswith("canny:") else src[srcname]
        for mode in RESIZE_MODES:
            (y_on, t_on), (y_off, t_off) = run_both(
                lambda: (lambda t: (detectmap_proc(m.copy(), module, mode, h, w, t), t))({}))
            stem = f"dmp-{case}-{MODE_SLUG[mode]}"
            if module == "canny":
                assert np.all(y_on == y_on[:, :, :1]) and np.all(y_off == y_off[:, :, :1])
                outs = W.put_pair(stem, y_on[:, :, 0], y_off[:, :, 0], channels="3 equal channels, stored as L")
            else:
                outs = W.put_pair(stem, y_on, y_off)
            info = {k: v for k, v in t_on.items() if not isinstance(v, np.ndarray)}
            cases.append({"id": stem, "op": "detectmap_proc",
                          "source": ("hq-input-canny-a-shapes-96x80.png (as 3 equal channels)"
                                     if module == "canny" else f"src-{srcname}.png"),
                          "params": {"module": module, "resize_mode": mode, "h": h, "w": w},
                          "trace": info, "ipp_invariant": bool(np.array_equal(y_on, y_off)),
                          "outputs": outs})

    if args.check:
        if W.mismatch:
            print("DIFFERENT:", *W.mismatch, sep="\n  ")
            return 1
        print(f"all {len(W.files)} files identical")
        return 0

    index = {
        "generator": "tools/make_canny_fixtures.py",
        "cv2": cv2.__version__, "numpy": np.__version__,
        "extension": {"repo": EXT_REPO, "commit": EXT_COMMIT},
        "conventions": {
            "sizes": "file names use WxH; shapes in JSON are numpy [H, W(, C)]",
            "color": "RGB order as numpy/PIL hold it (cv2 is called on RGB arrays, as the extension does)",
            "ipp": "<stem>.png = cv2 as shipped (IPP on); <stem>.noipp.png = cv2.ipp.setUseIPP(False), "
                   "present only where it differs; cv2_ipp 'both' = identical either way",
            "dedup": "an output whose pixels equal an earlier file's points at that file ('file'); "
                     "'name' is then the name it would have had",
            "model_identical*": "tools/opencv_model.py reproduces the (IPP-off) cv2 output bit for bit",
            "threads": "cv2.setNumThreads(2); results do not depend on the thread count",
        },
        "cases": cases,
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out, r["file"])) for r in W.files.values())
    print(f"{len(W.files)} PNGs, {total / 1024:.0f} KiB, {len(cases)} cases -> {out}")
    bad = [c["id"] for c in cases if c.get("model_identical") is False or
           (isinstance(c.get("model_identical_noipp"), bool) and not c["model_identical_noipp"]) or
           (isinstance(c.get("model_identical_noipp"), dict) and not all(c["model_identical_noipp"].values()))]
    if bad:
        print("model differs on:", *bad, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
