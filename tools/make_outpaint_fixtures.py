#!/usr/bin/env python3
"""Make the committed "Outpainting mk2" image-side fixtures in Tests/Fixtures/outpaint/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_outpaint_fixtures.py [--out Tests/Fixtures/outpaint] [--check]
    REF_VENV/bin/python tools/make_outpaint_fixtures.py --compare DIR      # pixels/arrays only (other versions)
    PY tools/make_outpaint_fixtures.py --trials-dump OUT.npz 400 [--dft]      # sensitivity study, see the spec
    PY tools/make_outpaint_fixtures.py --trials-compare A.npz B.npz

The pixels come from A1111 1.10.1's own script: the upstream file, read from the checkout named by $A1111_WEBUI
(its git blob hash is checked) and tools/outpaint_mk2_harness.py runs its Script.run with stub
`modules.*` / `gradio` modules. Nothing of the script is re-implemented here. `process_images` (the
generation) is replaced by a documented FAKE so that the image side can be tested without a model:

    fake process_images(p): images = [PIL.ImageOps.invert(im) for im in p.init_images]   (same size, RGB)

(so a direction step's result = its noised image with the inverted crop pasted back, then cropped to
res_w x res_h). What each step handed to process_images is read from the script's own objects: p, and the
locals of its expand() closure (the frame that called process_images); get_matched_noise is wrapped to keep
its inputs and output. Per case and direction step the files are

  <case>-s<k>-<dir>-input.png       the step's input image (init[n]: the init image, or the previous result)
  <case>-s<k>-<dir>-mask.png        the full-size mask drawn by expand() (RGB, white = repaint), as passed to
                                    get_matched_noise (np_mask = that / 255)
  <case>-s<k>-<dir>-noised.png      output_images[n] before the paste: get_matched_noise's result as uint8 (RGB,
                                    process_res_w x process_res_h)
  <case>-s<k>-<dir>-init.png        p.init_images[n]: the crop handed to process_images (may name the noised
                                    file when the crop is the whole image)
  <case>-s<k>-<dir>-image_mask.png  p.image_mask (RGB, the cropped mask; A1111 then blurs it with
                                    p.mask_blur_x / p.mask_blur_y)
  <case>-s<k>-<dir>-latent_mask.png p.latent_mask (RGB, p.width x p.height)
  <case>-s<k>-<dir>-image_mask_blurred.png, -mask_for_overlay.png, -latent_mask_array.npy
                                    what StableDiffusionProcessingImg2Img.init then makes of them (processing.py
                                    lines copied verbatim in a1111_init_masks; cv2.GaussianBlur, float32 array)
  <case>-out-<i>.png                the images the script returns ([grid] + images when there are 2 or more);
                                    identical files are stored once (a record's "file" may name an earlier file)

and, for the RNG and one get_matched_noise call (float64 .npy, little-endian, C order, shape [rows, cols(, 3)]):

  rng-first16.npy            np.random.default_rng(0).random(16)
  rng-raw16.npy              np.random.default_rng(0).bit_generator.random_raw(16) (uint64)
  rng-random-64x64x3.npy     np.random.default_rng(0).random((64, 64, 3)); other case shapes: sha256 in cases.json
  gmn-<case>-s0-*.npy        get_matched_noise internals of that call (locals at the match_histograms call):
                             windowed_image, noise_window, noise_filtered (noise_rgb after the window filter),
                             shaped_before_match (shaped_noise normalised to [0, 1]), and out (the returned array)

cases.json lists every case (parameters as the API's script_args, the derived sizes, per step the script's
numbers and rectangles, files with sha256) and the RNG facts. The script also carries pure-Python / numpy
models of what the port must do (SeedSequence + PCG64 + random(), the rectangles, the crop region, the
histogram matching as numpy computes it) and asserts that they reproduce the real outputs bit for bit.
--check re-makes everything into a temporary folder and compares byte for byte (exit 1 on a difference).
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
import warnings

import numpy as np
import PIL
from PIL import Image, ImageOps

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import golden_common  # noqa: E402
import outpaint_mk2_harness as H  # noqa: E402

INIT_128 = os.path.join(REPO, "Tests", "Fixtures", "images", "init-128.png")
MADE_WITH = {"numpy": "2.4.6", "pillow": "13.0.0", "scikit-image": "0.26.0"}

# init images: crops of the committed init-128.png (gradients, a ripple, solid shapes; box = PIL crop box),
# and one solid colour (size, RGB) for the NaN path of get_matched_noise
INITS = {"init-64x48": (32, 40, 96, 88), "init-96x64": (16, 32, 112, 96), "init-50x37": (60, 70, 110, 107),
         "solid-64x48": ("solid", (64, 48), (200, 30, 90))}


def case(cid, init, pixels, mask_blur, direction, noise_q, color_variation, width=512, height=512,
         batch_size=1, n_iter=1, doc=""):
    return dict(id=cid, init=init, pixels=pixels, mask_blur=mask_blur, direction=direction, noise_q=noise_q,
                color_variation=color_variation, width=width, height=height, batch_size=batch_size,
                n_iter=n_iter, doc=doc)


# width / height = p.width / p.height the request asked for (the API's default is 512 x 512)
CASES = [
    case("left-64x48-px8-mb4", "init-64x48", 8, 4, ["left"], 1.0, 0.05,
         doc="pixels 8 become 64 (target width ceil(72/64)*64 = 128); horizontal only, so p.mask_blur_y = 0; the "
             "process image is 64 px high: rows 48..63 are black padding, row 48 is inside the kept rectangle"),
    case("right-64x48-px16-mb0-q2-cv0.5", "init-64x48", 16, 0, ["right"], 2.0, 0.5,
         doc="no mask blur (rectangle edge at exactly 64), noise_q 2, colour variation 0.5"),
    case("up-96x64-px24-mb4", "init-96x64", 24, 4, ["up"], 1.0, 0.05,
         doc="pixels 24 become 64 (target height 128); the process image is 128 wide (96 + black padding)"),
    case("down-96x64-px8-mb4-q2-cv0.5", "init-96x64", 8, 4, ["down"], 2.0, 0.5),
    case("all-64x48-px16-mb4", "init-64x48", 16, 4, ["left", "right", "up", "down"], 1.0, 0.05,
         doc="four steps left, right, up, down: left = right = 32, up = down = 40; generation sizes 96x64, "
             "128x64, 128x88, 128x128; p.mask_blur_x = p.mask_blur_y = 16 in every step"),
    case("down-64x48-px8-mb8", "init-64x48", 8, 8, ["down"], 1.0, 0.05,
         doc="the UI's default mask blur 8: p.mask_blur_y = 32, kernel 2*int(80.5)+1 = 161 rows on a 64-row mask "
             "(OpenCV's reflect-101 border folds more than once); p.mask_blur_x = 0"),
    case("leftright-96x64-px24-mb0-q2", "init-96x64", 24, 0, ["right", "left"], 2.0, 0.05,
         doc="direction order in the list does not matter (left first); left = right = 48"),
    case("updown-50x37-px8-mb4-cv0.5", "init-50x37", 8, 4, ["down", "up"], 1.0, 0.5,
         doc="odd sizes: up = 8*27//16 = 13, down = 14; p.height 50 (not a multiple of 8) in the first step"),
    case("leftright-96x64-px16-mb4-w64", "init-96x64", 16, 4, ["left", "right"], 1.0, 0.05, width=64, height=64,
         doc="request width 64 < the expanded width: only a 64-wide crop next to the new edge is processed "
             "(crop (0,0,64,64) for left, (64,0,128,64) for right)"),
    case("nan-solid-64x48-left-px8-mb4", "solid-64x48", 8, 4, ["left"], 1.0, 0.05,
         doc="a solid-colour init: the windowed image is constant along a whole axis, its spectrum has exact "
             "zeros, src_phase = 0/0 = NaN and every value of the shaped noise is NaN: the kept area of the noised "
             "image becomes 0 (NaN cast to uint8) and the masked area, per channel, the largest kept value (here "
             "(200, 30, 90) itself); numpy warns 'invalid value' (silenced here)"),
    case("right-64x48-px8-mb4-batch2x2", "init-64x48", 8, 4, ["right"], 1.0, 0.05, batch_size=2, n_iter=2,
         doc="batch_size 2, batch count 2: one process_images per direction and batch iteration with 2 images; "
             "4 images, plus the grid (2x2 -> rows round(sqrt(4)) = 2) in front"),
]
NOISE_DUMP = ("updown-50x37-px8-mb4-cv0.5", 0)   # the get_matched_noise call whose internals are dumped


# =============================================================================================
# models (the spec in tools/OUTPAINT_MK2.md); asserted against the real outputs
# =============================================================================================

M32, M64, M128 = (1 << 32) - 1, (1 << 64) - 1, (1 << 128) - 1
SS_INIT_A, SS_MULT_A, SS_INIT_B, SS_MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
SS_MIX_MULT_L, SS_MIX_MULT_R, SS_XSHIFT = 0xCA01F9DD, 0x4973F715, 16
PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def m_seed_sequence_u32(entropy_words, n_words, pool_size=4):
    """numpy SeedSequence(entropy).generate_state(n_words, np.uint32) (bit_generator.pyx), entropy as uint32 words."""
    hc = [SS_INIT_A]

    def hashmix(v):
        v = (v ^ hc[0]) & M32
        hc[0] = (hc[0] * SS_MULT_A) & M32
        v = (v * hc[0]) & M32
        return v ^ (v >> SS_XSHIFT)

    def mix(x, y):
        r = (SS_MIX_MULT_L * x - SS_MIX_MULT_R * y) & M32
        return r ^ (r >> SS_XSHIFT)

    pool = [hashmix(entropy_words[i] if i < len(entropy_words) else 0) for i in range(pool_size)]
    for i_src in range(pool_size):
        for i_dst in range(pool_size):
            if i_src != i_dst:
                pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src]))
    for i_src in range(pool_size, len(entropy_words)):
        for i_dst in range(pool_size):
            pool[i_dst] = mix(pool[i_dst], hashmix(entropy_words[i_src]))
    out, h = [], SS_INIT_B
    for i in range(n_words):
        v = (pool[i % pool_size] ^ h) & M32
        h = (h * SS_MULT_B) & M32
        v = (v * h) & M32
        out.append(v ^ (v >> SS_XSHIFT))
    return out


class MPCG64:
    """numpy PCG64 (pcg64.h: 128-bit LCG, XSL-RR output, step before output) seeded as PCG64(SeedSequence(seed))."""
    def __init__(self, seed):
        w32 = m_seed_sequence_u32([seed] if seed else [0], 8)
        w = [w32[2 * i] | (w32[2 * i + 1] << 32) for i in range(4)]   # generate_state(4, uint64): little-endian pairs
        self.seed_u64 = w
        s, i = (w[0] << 64) | w[1], (w[2] << 64) | w[3]
        self.inc = ((i << 1) | 1) & M128
        self.state = 0
        self._step()
        self.state = (self.state + s) & M128
        self._step()

    def _step(self):
        self.state = (self.state * PCG_MULT + self.inc) & M128

    def next64(self):
        self._step()
        x = ((self.state >> 64) ^ self.state) & M64
        r = self.state >> 122
        return ((x >> r) | (x << ((64 - r) & 63))) & M64

    def random(self):
        return (self.next64() >> 11) * (1.0 / 9007199254740992.0)


def m_interp(x, xp, fp):
    """numpy.interp (compiled_base.c arr_interp) for 1-D float64, xp strictly increasing, default left/right."""
    x = np.asarray(x, np.float64)
    n = len(xp)
    if n == 1:
        return np.full(x.shape, fp[0])
    j = np.searchsorted(xp, x, side="right") - 1          # xp[j] <= x < xp[j+1]
    out = np.empty_like(x)
    lo, hi = j < 0, j >= n - 1
    out[lo] = fp[0]
    out[hi] = fp[n - 1]
    mid = ~(lo | hi)
    jm = j[mid]
    slope = (fp[jm + 1] - fp[jm]) / (xp[jm + 1] - xp[jm])
    res = slope * (x[mid] - xp[jm]) + fp[jm]
    res[xp[jm] == x[mid]] = fp[jm][xp[jm] == x[mid]]
    out[mid] = res
    return out


def m_match_histograms(src, ref):
    """skimage.exposure.match_histograms(src, ref, channel_axis=1) for float64 [N, C] / [M, C] (0.21 = 0.26):
    per channel, q(v) = #{src <= v} / N, the template's sorted distinct values t_k with Q_k = #{ref <= t_k} / M,
    out = numpy.interp(q, Q, t)."""
    out = np.empty(src.shape, np.float64)
    for c in range(src.shape[1]):
        s, r = src[:, c], ref[:, c]
        ss = np.sort(s)
        q = np.searchsorted(ss, s, side="right") / s.size
        tv, tc = np.unique(r, return_counts=True)
        tq = np.cumsum(tc) / r.size
        out[:, c] = m_interp(q, tq, tv)
    return out


def m_derived(c, init_w, init_h):
    """Script.run's numbers before the direction loop."""
    d = c["direction"]
    px = c["pixels"]
    left, right, up, down = (px if k in d else 0 for k in ("left", "right", "up", "down"))
    mbx = c["mask_blur"] if (left > 0 or right > 0) else 0
    mby = c["mask_blur"] if (up > 0 or down > 0) else 0
    tw = math.ceil((init_w + left + right) / 64) * 64
    th = math.ceil((init_h + up + down) / 64) * 64
    if left > 0:
        left = left * (tw - init_w) // (left + right)
    if right > 0:
        right = tw - init_w - left
    if up > 0:
        up = up * (th - init_h) // (up + down)
    if down > 0:
        down = th - init_h - up
    return dict(left=left, right=right, up=up, down=down, target_w=tw, target_h=th, mask_blur_x=mbx,
                mask_blur_y=mby, p_mask_blur_x=mbx * 4, p_mask_blur_y=mby * 4)


def m_step(direction, expand_pixels, in_w, in_h, mbx, mby, process_width, process_height):
    """expand() for one image: sizes, paste offset, mask rectangle, crop, p.width/height, latent rectangle."""
    is_left, is_right, is_top, is_bottom = (direction == k for k in ("left", "right", "up", "down"))
    horiz, vert = is_left or is_right, is_top or is_bottom
    ph, pv = (expand_pixels if horiz else 0), (expand_pixels if vert else 0)
    res_w, res_h = in_w + ph, in_h + pv
    prw, prh = math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64
    paste = (ph if is_left else 0, pv if is_top else 0)
    rect = (expand_pixels + mbx if is_left else 0, expand_pixels + mby if is_top else 0,
            prw - expand_pixels - mbx if is_right else res_w, prh - expand_pixels - mby if is_bottom else res_h)
    tw = min(process_width, in_w + ph) if horiz else prw
    th = min(process_height, in_h + pv) if vert else prh
    crop = (0 if is_left else prw - tw, 0 if is_top else prh - th, tw if is_left else prw, th if is_top else prh)
    mw = crop[2] - crop[0]   # the cropped mask's width / height = p.width / p.height
    mh = crop[3] - crop[1]
    lrect = (expand_pixels + mbx * 2 if is_left else 0, expand_pixels + mby * 2 if is_top else 0,
             mw - expand_pixels - mbx * 2 if is_right else res_w, mh - expand_pixels - mby * 2 if is_bottom else res_h)
    # paste of the (p.width x p.height) result into the noised image, then crop to (0, 0, res_w, res_h)
    paste_back = (0 if is_left else prw - tw, 0 if is_top else prh - th)
    return dict(res_w=res_w, res_h=res_h, process_res_w=prw, process_res_h=prh, paste=list(paste),
                mask_rect=list(rect), crop_region=list(crop), p_width=tw, p_height=th, latent_rect=list(lrect),
                paste_back=list(paste_back))


def m_rect_image(size, rect):
    """Image.new('RGB', size, 'white') with ImageDraw.rectangle(rect, fill='black'): inclusive of x1 / y1."""
    w, h = size
    a = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = rect
    if x1 < x0 or y1 < y0:
        raise ValueError("x1 must be greater than or equal to x0")
    a[max(y0, 0):max(min(y1 + 1, h), 0), max(x0, 0):max(min(x1 + 1, w), 0)] = 0
    return a


# =============================================================================================
# what StableDiffusionProcessingImg2Img.init then does with p.image_mask / p.latent_mask (A1111 1.10.1
# modules/processing.py; the lines marked "verbatim" are copied from there, resize_mode 0, whole picture,
# mask_round True: the resize to p.width x p.height is the identity because the mask already has that size)
# =============================================================================================

def a1111_init_masks(p):
    import cv2
    image_mask = p.image_mask
    image_mask = image_mask.convert('L')   # create_binary_mask: not RGBA -> convert('L')
    if p.mask_blur_x > 0:                                                                        # verbatim
        np_mask = np.array(image_mask)                                                           # verbatim
        kernel_size = 2 * int(2.5 * p.mask_blur_x + 0.5) + 1                                     # verbatim (self -> p)
        np_mask = cv2.GaussianBlur(np_mask, (kernel_size, 1), p.mask_blur_x)                     # verbatim (self -> p)
        image_mask = Image.fromarray(np_mask)                                                    # verbatim
    if p.mask_blur_y > 0:                                                                        # verbatim
        np_mask = np.array(image_mask)                                                           # verbatim
        kernel_size = 2 * int(2.5 * p.mask_blur_y + 0.5) + 1                                     # verbatim (self -> p)
        np_mask = cv2.GaussianBlur(np_mask, (1, kernel_size), p.mask_blur_y)                     # verbatim (self -> p)
        image_mask = Image.fromarray(np_mask)                                                    # verbatim
    assert image_mask.size == (p.width, p.height)   # images.resize_image(0, ...) to the same size: a copy
    np_mask = np.array(image_mask)                                                               # verbatim
    np_mask = np.clip((np_mask.astype(np.float32)) * 2, 0, 255).astype(np.uint8)                 # verbatim
    mask_for_overlay = Image.fromarray(np_mask)
    latent_mask = p.latent_mask
    latmask = latent_mask.convert('RGB').resize((p.width // 8, p.height // 8))   # init_latent is [.., H//8, W//8]
    latmask = np.moveaxis(np.array(latmask, dtype=np.float32), 2, 0) / 255                       # verbatim
    latmask = latmask[0]                                                                         # verbatim
    latmask = np.around(latmask)                                                                 # verbatim (mask_round)
    return image_mask, mask_for_overlay, latmask


# =============================================================================================
# running the real script
# =============================================================================================

def fake_generation(p):
    return [ImageOps.invert(im.convert("RGB")) for im in p.init_images]


class Recorder:
    """process_images hook + get_matched_noise wrapper; keeps copies of everything the script hands over."""
    def __init__(self, mod):
        self.mod = mod
        self.orig_gmn = mod.get_matched_noise
        self.gmn_calls = []
        self.steps = []
        self.dump_call = None     # index of the get_matched_noise call whose internals are kept
        self.internals = None

    def gmn(self, np_image, np_mask, noise_q, color_variation):
        import skimage.exposure as E
        k = len(self.gmn_calls)
        rec = dict(np_image=np_image.copy(), np_mask=np_mask.copy(), noise_q=noise_q,
                   color_variation=color_variation)
        orig = E.match_histograms

        def spy(image, reference, **kw):
            f = sys._getframe(1)
            assert f.f_code.co_name == "get_matched_noise"
            out = orig(image, reference, **kw)
            rec["match"] = dict(image=image.copy(), reference=reference.copy(), kw=kw, out=out.copy())
            if k == self.dump_call:
                L = f.f_locals
                self.internals = dict(windowed_image=L["windowed_image"].copy(), noise_window=L["noise_window"].copy(),
                                      noise_filtered=L["noise_rgb"].copy(),
                                      shaped_before_match=L["shaped_noise"].copy())
            return out
        E.match_histograms = spy
        try:
            out = self.orig_gmn(np_image, np_mask, noise_q, color_variation)
        finally:
            E.match_histograms = orig
        rec["out"] = out.copy()
        self.gmn_calls.append(rec)
        return out

    def process_images(self, p):
        f = sys._getframe(0)
        while f is not None and f.f_code.co_name != "expand":
            f = f.f_back
        L = f.f_locals
        dirs = [k for k, flag in (("left", L["is_left"]), ("right", L["is_right"]), ("up", L["is_top"]),
                                  ("down", L["is_bottom"])) if flag]
        self.steps.append(dict(
            direction=dirs[0], expand_pixels=L["expand_pixels"], count=L["count"],
            inputs=[im.copy() for im in L["init"][:L["count"]]],
            noised=[im.copy() for im in L["output_images"]],
            init_images=[im.copy() for im in p.init_images],
            image_mask=p.image_mask.copy(), latent_mask=p.latent_mask.copy(),
            locals={k: L[k] for k in ("res_w", "res_h", "process_res_w", "process_res_h", "target_width",
                                      "target_height", "crop_region")},
            p={k: getattr(p, k) for k in ("width", "height", "mask_blur_x", "mask_blur_y", "inpainting_fill",
                                          "inpaint_full_res", "n_iter", "batch_size", "do_not_save_samples",
                                          "do_not_save_grid")},
            gmn_calls=list(range(len(self.gmn_calls) - L["count"], len(self.gmn_calls)))))
        k = len(self.steps)
        return H.Processed(p, fake_generation(p), seed=1000 + k, info=f"fake infotext of process_images call {k}")


def run_case(mod, c, init, dump_first_call=False):
    rec = Recorder(mod)
    if dump_first_call:
        rec.dump_call = 0
    mod.get_matched_noise = rec.gmn
    H.HOOK["process_images"] = rec.process_images
    try:
        p = H.P(init, c["width"], c["height"], batch_size=c["batch_size"], n_iter=c["n_iter"])
        res = mod.Script().run(p, "", c["pixels"], c["mask_blur"], c["direction"], c["noise_q"], c["color_variation"])
    finally:
        mod.get_matched_noise = rec.orig_gmn
        H.HOOK["process_images"] = None
    return rec, p, res


# =============================================================================================
# writing
# =============================================================================================

class Writer:
    def __init__(self, out):
        self.out = out
        self.files = {}      # name -> size
        self.by_hash = {}    # sha256 -> name

    def _write(self, name, data):
        h = hashlib.sha256(data).hexdigest()
        if h in self.by_hash:
            return self.by_hash[h], h
        with open(os.path.join(self.out, name), "wb") as f:
            f.write(data)
        self.files[name] = len(data)
        self.by_hash[h] = name
        return name, h

    def png(self, name, img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        fn, h = self._write(name, buf.getvalue())
        return {"name": name, "file": fn, "mode": img.mode, "size": list(img.size), "sha256": h}

    def npy(self, name, arr):
        arr = np.ascontiguousarray(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        fn, h = self._write(name, buf.getvalue())
        return {"name": name, "file": fn, "dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": h}


def u8_from_float(a):
    """the script's own conversion in expand(): np.clip(noised * 255., 0., 255.).astype(np.uint8)"""
    with np.errstate(invalid="ignore"):
        return np.clip(a * 255., 0., 255.).astype(np.uint8)


def generate(out):
    import skimage
    mod = H.load()
    os.makedirs(out, exist_ok=True)
    W = Writer(out)
    base = Image.open(INIT_128).convert("RGB")
    inits, init_recs = {}, {}
    for name, box in INITS.items():
        if box[0] == "solid":
            inits[name] = Image.new("RGB", box[1], box[2])
            init_recs[name] = dict(W.png(f"in-{name}.png", inits[name]), source=f"Image.new('RGB', {box[1]}, {box[2]})")
            continue
        inits[name] = base.crop(box)
        init_recs[name] = dict(W.png(f"in-{name}.png", inits[name]), source="Tests/Fixtures/images/init-128.png",
                               crop_box=list(box))

    cases, shapes, checks = [], set(), {"rectangles": 0, "crops": 0, "match_histograms": 0, "results": 0}
    for c in CASES:
        init = inits[c["init"]]
        dump = (c["id"] == NOISE_DUMP[0])
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rec, p, res = run_case(mod, c, init, dump_first_call=dump)
        der = m_derived(c, init.width, init.height)
        assert (p.mask_blur_x, p.mask_blur_y) == (der["p_mask_blur_x"], der["p_mask_blur_y"])
        assert (p.inpainting_fill, p.inpaint_full_res, p.n_iter) == (1, False, 1)
        steps = []
        for k, s in enumerate(rec.steps):
            d = s["direction"]
            stem = f"{c['id']}-s{k}-{d}"
            n0 = s["inputs"][0]
            m = m_step(d, s["expand_pixels"], n0.width, n0.height, der["mask_blur_x"], der["mask_blur_y"],
                       c["width"], c["height"])
            assert s["expand_pixels"] == der[d]
            L = s["locals"]
            for key in ("res_w", "res_h", "process_res_w", "process_res_h"):
                assert L[key] == m[key], (c["id"], k, key)
            assert list(L["crop_region"]) == m["crop_region"]
            assert (s["p"]["width"], s["p"]["height"]) == (m["p_width"], m["p_height"])
            checks["crops"] += 1
            files = {"input": [], "mask": [], "noised": [], "init": [], "image_mask": [], "latent_mask": []}
            for n in range(s["count"]):
                g = rec.gmn_calls[s["gmn_calls"][n]]
                shapes.add(g["np_image"].shape)
                # the mask passed to get_matched_noise (values 0 / 1 exactly), as the RGB image expand() drew
                mask_u8 = np.rint(g["np_mask"] * 255).astype(np.uint8)
                assert np.array_equal(mask_u8 / 255.0, g["np_mask"])
                assert np.array_equal(mask_u8, m_rect_image((m["process_res_w"], m["process_res_h"]), m["mask_rect"]))
                gin = Image.new("RGB", (m["process_res_w"], m["process_res_h"]))
                gin.paste(s["inputs"][n], tuple(m["paste"]))
                assert np.array_equal(np.asarray(gin) / 255.0, g["np_image"])
                assert np.array_equal(u8_from_float(g["out"]), np.asarray(s["noised"][n]))
                assert np.array_equal(np.asarray(s["noised"][n].crop(tuple(m["crop_region"]))),
                                      np.asarray(s["init_images"][n]))
                # the histogram matching as the spec describes it, on this call's own arguments
                mt = g["match"]
                assert mt["kw"] == {"channel_axis": 1}
                assert np.array_equal(m_match_histograms(mt["image"], mt["reference"]), mt["out"])
                checks["match_histograms"] += 1
                checks["rectangles"] += 1
                files["input"].append(W.png(f"{stem}-input{n}.png" if n else f"{stem}-input.png", s["inputs"][n]))
                files["mask"].append(W.png(f"{stem}-mask{n}.png" if n else f"{stem}-mask.png", Image.fromarray(mask_u8, "RGB")))
                files["noised"].append(W.png(f"{stem}-noised{n}.png" if n else f"{stem}-noised.png", s["noised"][n]))
                files["init"].append(W.png(f"{stem}-init{n}.png" if n else f"{stem}-init.png", s["init_images"][n]))
            assert np.array_equal(np.asarray(s["image_mask"]),
                                  m_rect_image((m["process_res_w"], m["process_res_h"]), m["mask_rect"])[
                                      m["crop_region"][1]:m["crop_region"][3], m["crop_region"][0]:m["crop_region"][2]])
            assert np.array_equal(np.asarray(s["latent_mask"]), m_rect_image((m["p_width"], m["p_height"]), m["latent_rect"]))
            files["image_mask"].append(W.png(f"{stem}-image_mask.png", s["image_mask"]))
            files["latent_mask"].append(W.png(f"{stem}-latent_mask.png", s["latent_mask"]))
            pp = type("PP", (), {})()
            pp.image_mask, pp.latent_mask = s["image_mask"], s["latent_mask"]
            pp.mask_blur_x, pp.mask_blur_y = s["p"]["mask_blur_x"], s["p"]["mask_blur_y"]
            pp.width, pp.height = s["p"]["width"], s["p"]["height"]
            blurred, overlay_mask, latmask = a1111_init_masks(pp)
            files["processing"] = {
                "doc": "what StableDiffusionProcessingImg2Img.init makes of these (not the script's own work): "
                       "image_mask convert('L') + cv2.GaussianBlur (k,1) sigma p.mask_blur_x then (1,k) sigma "
                       "p.mask_blur_y; mask_for_overlay = clip(2 * that); latent mask = latent_mask.convert('RGB')"
                       ".resize((W//8, H//8)) (BICUBIC), channel 0 / 255, np.around (float32)",
                "image_mask_blurred": W.png(f"{stem}-image_mask_blurred.png", blurred),
                "mask_for_overlay": W.png(f"{stem}-mask_for_overlay.png", overlay_mask),
                "latent_mask_array": W.npy(f"{stem}-latent_mask_array.npy", latmask),
                "kernel": [2 * int(2.5 * pp.mask_blur_x + 0.5) + 1 if pp.mask_blur_x > 0 else None,
                           2 * int(2.5 * pp.mask_blur_y + 0.5) + 1 if pp.mask_blur_y > 0 else None]}
            steps.append(dict(index=k, direction=d, expand_pixels=s["expand_pixels"], images=s["count"],
                              input_size=[n0.width, n0.height], **m,
                              p={kk: v for kk, v in s["p"].items()},
                              gmn={"shape": list(rec.gmn_calls[s["gmn_calls"][0]]["np_image"].shape),
                                   "noise_q": c["noise_q"], "color_variation": c["color_variation"]},
                              fake_generation="PIL.ImageOps.invert(init) for each p.init_images",
                              files=files))
        # results: within a batch iteration a step's result is the next step's input; the last step's
        # results are the script's returned images (after the grid, if any)
        ndirs = sum(1 for key in ("left", "right", "up", "down") if der[key] > 0)
        assert len(rec.steps) == ndirs * c["n_iter"]
        off = len(res.images) - c["batch_size"] * c["n_iter"]
        for k in range(len(steps)):
            steps[k]["iteration"] = k // ndirs
            for n in range(rec.steps[k]["count"]):
                m = steps[k]
                expect = rec.steps[k]["noised"][n].copy()
                expect.paste(ImageOps.invert(rec.steps[k]["init_images"][n]), tuple(m["paste_back"]))
                expect = expect.crop((0, 0, m["res_w"], m["res_h"]))
                got = rec.steps[k + 1]["inputs"][n] if (k + 1) % ndirs else \
                    res.images[off + (k // ndirs) * c["batch_size"] + n]
                assert np.array_equal(np.asarray(expect), np.asarray(got)), (c["id"], k, n)
                checks["results"] += 1
        outs = [W.png(f"{c['id']}-out-{i}.png", im) for i, im in enumerate(res.images)]
        grid = len(res.images) > c["batch_size"] * c["n_iter"]
        case_rec = dict(id=c["id"], doc=c["doc"], init=init_recs[c["init"]]["file"], init_size=list(init.size),
                        script_args=["", c["pixels"], c["mask_blur"], c["direction"], c["noise_q"], c["color_variation"]],
                        width=c["width"], height=c["height"], batch_size=c["batch_size"], n_iter=c["n_iter"],
                        derived=der, process_images_calls=len(rec.steps), steps=steps,
                        result={"images": outs, "grid_first": grid, "seed": res.seed, "info": res.info,
                                "p_width_after": p.width, "p_height_after": p.height,
                                "p_n_iter_after": p.n_iter})
        if dump:
            I = rec.internals
            g0 = rec.gmn_calls[0]
            stem = f"gmn-{c['id']}-s0"
            case_rec["gmn_dump"] = dict(
                step=0, shape=list(g0["np_image"].shape),
                doc="locals of get_matched_noise at its match_histograms call, and its return value",
                windowed_image=W.npy(f"{stem}-windowed_image.npy", I["windowed_image"]),
                noise_window=W.npy(f"{stem}-noise_window.npy", I["noise_window"]),
                noise_filtered=W.npy(f"{stem}-noise_filtered.npy", I["noise_filtered"]),
                shaped_before_match=W.npy(f"{stem}-shaped_before_match.npy", I["shaped_before_match"]),
                out=W.npy(f"{stem}-out.npy", g0["out"]),
                masked_pixels=int(g0["match"]["image"].shape[0]), reference_pixels=int(g0["match"]["reference"].shape[0]),
                average=float(np.average(g0["np_image"])))
        cases.append(case_rec)

    # ---- RNG -------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    st = rng.bit_generator.state
    model = MPCG64(0)
    assert (model.state, model.inc) == (st["state"]["state"], st["state"]["inc"])
    assert model.seed_u64 == [int(v) for v in np.random.SeedSequence(0).generate_state(4, np.uint64)]
    raw = np.random.default_rng(0).bit_generator.random_raw(16)
    first16 = np.random.default_rng(0).random(16)
    m2 = MPCG64(0)
    assert [m2.next64() for _ in range(16)] == [int(v) for v in raw]
    m3 = MPCG64(0)
    assert np.array_equal(np.array([m3.random() for _ in range(16)]), first16)
    shape_recs = []
    for shp in sorted(shapes):
        a = np.random.default_rng(0).random(shp)
        mm = MPCG64(0)
        assert np.array_equal(np.array([mm.random() for _ in range(a.size)]).reshape(shp), a)
        shape_recs.append({"shape": list(shp), "sha256_float64_le": hashlib.sha256(a.astype("<f8").tobytes()).hexdigest(),
                           "first": float(a.flat[0]), "last": float(a.flat[-1]), "sum": math.fsum(a.ravel().tolist())})
    full = np.random.default_rng(0).random((64, 64, 3))
    rng_rec = {
        "doc": "np.random.default_rng(0) = Generator(PCG64(SeedSequence(0))); random() = (next64 >> 11) * 2**-53; "
               "a (rows, cols, 3) draw is the first rows*cols*3 doubles in C order",
        "seed_sequence_0_u32": [f"0x{v:08x}" for v in m_seed_sequence_u32([0], 8)],
        "generate_state_4_u64": [f"0x{v:016x}" for v in model.seed_u64],
        "pcg64_after_seeding": {"state": f"0x{st['state']['state']:032x}", "inc": f"0x{st['state']['inc']:032x}"},
        "pcg64_multiplier": f"0x{PCG_MULT:032x}",
        "first16_raw_u64": W.npy("rng-raw16.npy", raw),
        "first16_hex": [f"0x{int(v):016x}" for v in raw],
        "first16": W.npy("rng-first16.npy", first16),
        "first16_values": [float(v) for v in first16],
        "random_64x64x3": W.npy("rng-random-64x64x3.npy", full),
        "case_shapes": shape_recs,
        "model_identical": True,
    }

    index = {
        "generator": "tools/make_outpaint_fixtures.py",
        "script": H.UPSTREAM + " (from $A1111_WEBUI, git blob " + H.UPSTREAM_BLOB + ")",
        "spec": "tools/OUTPAINT_MK2.md",
        "versions": {"numpy": np.__version__, "pillow": PIL.__version__, "scikit-image": skimage.__version__,
                     "opencv": __import__("cv2").__version__, "python": platform.python_version()},
        "conventions": {
            "sizes": "size = [width, height]; shape (npy, get_matched_noise arrays) = [rows, cols(, 3)]",
            "rectangles": "PIL ImageDraw.rectangle boxes (x0, y0, x1, y1), inclusive of x1 and y1, clipped to the image",
            "crop_region": "PIL crop box (x0, y0, x1, y1), exclusive",
            "file_record": "{name, file, mode, size, sha256}; identical outputs are stored once, so file may differ from name",
            "fake_generation": "process_images is replaced by: images = [ImageOps.invert(im) for im in p.init_images]",
            "script_args": "[info, pixels, mask_blur, direction, noise_q, color_variation] as the API passes them",
        },
        "opts": H.OPTS_DEFAULTS,
        "checks": checks,
        "inputs": init_recs,
        "rng": rng_rec,
        "cases": cases,
    }
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    return W, index


# =============================================================================================
# comparison with another run (other library versions): decoded pixels / arrays, not bytes
# =============================================================================================

def load_any(path):
    if path.endswith(".npy"):
        return np.load(path)
    with Image.open(path) as im:
        return np.asarray(im.convert(im.mode))


def compare_dirs(a, b):
    """Decoded pixels / arrays must be identical, except get_matched_noise's float intermediates (gmn-*.npy other
    than -out), which depend on the FFT and summation order: reported, not failed, when within 1e-12."""
    names = sorted(set(os.listdir(a)) | set(os.listdir(b)))
    bad = []
    for n in names:
        if n in ("cases.json", "README.md", "golden"):
            continue
        pa, pb = os.path.join(a, n), os.path.join(b, n)
        if not (os.path.exists(pa) and os.path.exists(pb)):
            bad.append(f"{n}: only in one")
            continue
        x, y = load_any(pa), load_any(pb)
        if x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            continue
        if x.shape == y.shape and x.dtype.kind == "f" and n.startswith("gmn-") and not n.endswith("-out.npy"):
            d = float(np.max(np.abs(x - y)))
            if d <= 1e-12:
                print(f"  {n}: {int(np.sum(x != y))} values differ by at most {d:.3g} (FFT / summation rounding)")
                continue
        diff = "" if x.shape != y.shape else f" ({int(np.sum(x != y))} values differ)"
        bad.append(f"{n}{diff}")
    return bad


# =============================================================================================
# sensitivity of the bytes to floating-point details (for the spec's estimate): run the same random
# get_matched_noise calls under two environments (e.g. this venv and one with A1111's pins numpy 1.26.2 /
# scikit-image 0.21.0, whose pocketfft is the older C code and whose np.average sums in another order),
# optionally with numpy's FFT replaced by a plain O(n^3) DFT, and compare
# =============================================================================================

TRIAL_SIZES = [(64, 64), (64, 128), (128, 64), (128, 128), (192, 128), (512, 640), (640, 512), (512, 512)]


def trials_dump(path, n, use_dft=False, seed=7):
    mod = H.load()
    if use_dft:
        def dft(x, sign):
            o = x.astype(np.complex128)
            for ax in (1, 0):
                m = o.shape[ax]
                k = np.arange(m)
                F = np.exp(sign * 2j * np.pi * np.outer(k, k) / m) / math.sqrt(m)
                o = np.tensordot(o, F, axes=([1], [0])) if ax == 1 else np.tensordot(F, o, axes=([1], [0]))
            return o
        np.fft.fft2 = lambda x, norm=None: dft(x, -1)
        np.fft.ifft2 = lambda x, norm=None: dft(x, 1)
    r = np.random.default_rng(seed)
    res = {}
    for t in range(n):
        h, w = TRIAL_SIZES[t % len(TRIAL_SIZES)]
        base = r.random((h // 16 + 2, w // 16 + 2, 3))
        img = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
        img = img.astype(np.float64) / 255.0
        mask = np.zeros((h, w, 3))
        side, frac = int(r.integers(0, 4)), float(r.uniform(0.1, 0.3))
        e = max(8, int((w if side < 2 else h) * frac))
        if side == 0:
            mask[:, :e] = 1
        elif side == 1:
            mask[:, w - e:] = 1
        elif side == 2:
            mask[:e] = 1
        else:
            mask[h - e:] = 1
        img = img * (1 - mask)
        q, cv = float(r.choice([1.0, 2.0, 0.5, 1.5])), float(r.choice([0.05, 0.5, 0.0, 1.0]))
        a = mod.get_matched_noise(img, mask, q, cv)
        res[f"u{t}"] = u8_from_float(a)
        res[f"f{t}"] = a
    np.savez_compressed(path, **res)


def trials_compare(pa, pb):
    a, b = np.load(pa), np.load(pb)
    n = len([k for k in a.files if k.startswith("u")])
    per = {}
    for t in range(n):
        nf = int(np.sum(a[f"f{t}"] != b[f"f{t}"]))
        ua, ub = a[f"u{t}"], b[f"u{t}"]
        nu = int(np.sum(ua != ub))
        s = "x".join(map(str, TRIAL_SIZES[t % len(TRIAL_SIZES)]))
        rec = per.setdefault(s, [0, 0, 0, 0])
        rec[0] += 1
        rec[1] += nf > 0
        rec[2] += nu > 0
        rec[3] += nu
        if nu:
            print(f"call {t} ({s}): {nf} float values and {nu} bytes differ "
                  f"(max |diff| {int(np.max(np.abs(ua.astype(int) - ub.astype(int))))})")
    print("rows x cols: calls, calls with float differences, calls with byte differences, bytes")
    for s, (c, f, u, nb) in per.items():
        print(f"  {s:8} {c:4} {f:4} {u:4} {nb:4}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures", "outpaint"))
    ap.add_argument("--check", action="store_true", help="re-make into a temporary folder and compare byte for byte")
    ap.add_argument("--compare", metavar="DIR", help="re-make and compare decoded pixels / arrays with DIR")
    ap.add_argument("--trials-dump", nargs=2, metavar=("OUT.npz", "N"),
                    help="only run N random get_matched_noise calls and save their results (sensitivity study)")
    ap.add_argument("--dft", action="store_true", help="with --trials-dump: numpy's FFT replaced by a plain DFT")
    ap.add_argument("--trials-compare", nargs=2, metavar=("A.npz", "B.npz"), help="compare two --trials-dump files")
    args = ap.parse_args()
    if args.trials_dump:
        trials_dump(args.trials_dump[0], int(args.trials_dump[1]), args.dft)
        return 0
    if args.trials_compare:
        trials_compare(*args.trials_compare)
        return 0
    import skimage
    got = {"numpy": np.__version__, "pillow": PIL.__version__, "scikit-image": skimage.__version__}
    for k, v in MADE_WITH.items():
        if got[k] != v:
            print(f"warning: {k} {got[k]}, the fixtures were made with {v}", file=sys.stderr)
    out = os.path.normpath(args.out)
    if args.check or args.compare:
        tmp = tempfile.mkdtemp(prefix="outpaint-fixtures-")
        try:
            generate(tmp)
            if args.compare:
                bad = compare_dirs(tmp, args.compare)
                if bad:
                    print("DIFFERENT:", *bad, sep="\n  ")
                    return 1
                print(f"all {len(os.listdir(tmp)) - 1} files have identical pixels / arrays")
                return 0
            return golden_common.compare_dirs(tmp, out, keep=("README.md", "golden"))
        finally:
            shutil.rmtree(tmp)
    if os.path.isdir(out):   # start clean (keep the hand-written README.md and the golden/ folder)
        for n in os.listdir(out):
            if n.endswith(".png") or n.endswith(".npy") or n == "cases.json":
                os.remove(os.path.join(out, n))
    W, index = generate(out)
    total = sum(W.files.values())
    print(f"{len(W.files)} files, {total / 1024:.0f} KiB, {len(index['cases'])} cases -> {out}")
    print("checks:", index["checks"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
