#!/usr/bin/env python3
"""Plain numpy models of the OpenCV 5.0.0 (opencv-python-headless 5.0.0.93, x86_64) kernels that
the sd-webui-controlnet canny preprocessor uses, written as the spec for a bit-exact Swift port,
and a self-check against cv2 (run by hand with the reference venv):

    REF_VENV/bin/python tools/opencv_model.py [--quick]

Every function takes / returns uint8 HxW or HxWxC numpy arrays and uses only integer or
explicitly float32 arithmetic, in the order OpenCV's C++ does it (file references are to
modules/imgproc/src/{canny,resize}.cpp of OpenCV 4.x/5.x; see the report in tools/README.md):

  canny(img, low, high)            cv::Canny, aperture 3, L1 gradient, any channel count
  resize_nearest(img, w, h)        INTER_NEAREST
  resize_area(img, w, h)           INTER_AREA (fast integer-factor path, general float path, and
                                   the bilinear "area_mode" fallback when an axis enlarges)
  resize_linear(img, w, h)         INTER_LINEAR (fixed point), only as that fallback's core
  resize_cubic(img, w, h, vec=...) INTER_CUBIC as OpenCV's own C++ computes it (IPP off): the
                                   integer scalar path, optionally with the SIMD float vertical
                                   pass over the first (width*cn // L) * L elements of each row
                                   (vec=(L, fma)); cv2 5.0.0 on AVX2 = vec=(16, True)

The self-check (``main``) compares each model with cv2 on many random sizes, with
cv2.ipp.setUseIPP(False) and with IPP on (the default), and prints what matched. With IPP on,
cv2.resize(INTER_CUBIC) of uint8 images goes to Intel IPP (closed source) in most cases and is
NOT modelled here; see tools/README.md ("Canny / resize fixtures").
"""
import argparse
import sys

import numpy as np

INTER_RESIZE_COEF_BITS = 11
INTER_RESIZE_COEF_SCALE = 1 << INTER_RESIZE_COEF_BITS
DBL_EPSILON = np.finfo(np.float64).eps
F32 = np.float32


def _hwc(img):
    return (img[:, :, None], True) if img.ndim == 2 else (img, False)


def _ret(out, squeeze):
    return out[:, :, 0] if squeeze else out


def cv_round(v):
    """cvRound / saturate_cast<int>(double|float): round half to even (lrint, default FP mode)."""
    return int(np.rint(v))


# ---------------------------------------------------------------------------------------------
# Canny
# ---------------------------------------------------------------------------------------------

def sobel3(img):
    """Sobel(src, CV_16S, 1,0 / 0,1, ksize 3, scale 1, delta 0, BORDER_REPLICATE) per channel.
    dx = [1 2 1]^T (x) [-1 0 1], dy = [-1 0 1]^T (x) [1 2 1]; exact integers."""
    a, _ = _hwc(img)
    p = np.pad(a.astype(np.int32), [(1, 1), (1, 1), (0, 0)], mode="edge")
    h, w = a.shape[:2]
    s = lambda dy, dx: p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    gx = (s(-1, 1) - s(-1, -1)) + 2 * (s(0, 1) - s(0, -1)) + (s(1, 1) - s(1, -1))
    gy = (s(1, -1) - s(-1, -1)) + 2 * (s(1, 0) - s(-1, 0)) + (s(1, 1) - s(-1, 1))
    return gx, gy


def canny(img, low, high):
    """cv::Canny(src, dst, low, high, 3, false) for uint8 with any channel count.

    low/high: swapped if low > high, then floored (cvFloor). Per channel m = |dx| + |dy|;
    per pixel the channel with the largest m wins, the FIRST channel on ties (strict >), and
    its dx, dy are kept. Magnitudes outside the image are 0. NMS (TG22 = 13573 = tan(22.5)*2^15):
    x = |dx|, y = |dy| << 15, tg22x = x*13573;
      y <  tg22x                 -> horizontal: m > m[left]  and m >= m[right]
      y >  tg22x + (x << 16)     -> vertical:   m > m[up]    and m >= m[down]
      else diagonal, s = -1 if dx, dy have opposite signs (dx ^ dy < 0) else +1:
                                    m > m[up][j - s]  and m > m[down][j + s]
    only for m > low; a survivor with m > high is a seed (2), else a candidate (0); the rest 1.
    Hysteresis: 8-connected flood fill from the seeds through candidates. Output 255 / 0."""
    a, _ = _hwc(img)
    if low > high:
        low, high = high, low
    low, high = int(np.floor(low)), int(np.floor(high))
    gx, gy = sobel3(a)
    mag = np.abs(gx) + np.abs(gy)
    h, w, cn = a.shape
    best = np.zeros((h, w), dtype=np.int64)
    for k in range(1, cn):
        best = np.where(mag[:, :, k] > np.take_along_axis(mag, best[:, :, None], 2)[:, :, 0], k, best)
    m = np.take_along_axis(mag, best[:, :, None], 2)[:, :, 0].astype(np.int64)
    dx = np.take_along_axis(gx, best[:, :, None], 2)[:, :, 0].astype(np.int64)
    dy = np.take_along_axis(gy, best[:, :, None], 2)[:, :, 0].astype(np.int64)
    mp = np.pad(m, 1)  # zero outside
    nb = lambda oy, ox: mp[1 + oy:1 + oy + h, 1 + ox:1 + ox + w]
    x = np.abs(dx)
    y = np.abs(dy) << 15
    tg22x = x * 13573
    tg67x = tg22x + (x << 16)
    horiz = y < tg22x
    vert = ~horiz & (y > tg67x)
    diag = ~horiz & ~vert
    s_neg = (dx ^ dy) < 0
    ok_h = (m > nb(0, -1)) & (m >= nb(0, 1))
    ok_v = (m > nb(-1, 0)) & (m >= nb(1, 0))
    ok_d_pos = (m > nb(-1, -1)) & (m > nb(1, 1))     # s = +1: up-left / down-right
    ok_d_neg = (m > nb(-1, 1)) & (m > nb(1, -1))     # s = -1: up-right / down-left
    ok_d = np.where(s_neg, ok_d_neg, ok_d_pos)
    nms = (m > low) & ((horiz & ok_h) | (vert & ok_v) | (diag & ok_d))
    strong = nms & (m > high)
    cand = nms
    out = np.zeros((h, w), dtype=np.uint8)
    stack = list(zip(*np.nonzero(strong)))
    for (i, j) in stack:
        out[i, j] = 255
    while stack:
        i, j = stack.pop()
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ii, jj = i + di, j + dj
                if 0 <= ii < h and 0 <= jj < w and cand[ii, jj] and out[ii, jj] == 0:
                    out[ii, jj] = 255
                    stack.append((ii, jj))
    return out


# ---------------------------------------------------------------------------------------------
# resize: shared scale computation (cv::resize with an explicit dsize)
# ---------------------------------------------------------------------------------------------

def _scales(sw, sh, dw, dh):
    inv_x, inv_y = float(dw) / sw, float(dh) / sh          # cv::resize
    return inv_x, inv_y, 1.0 / inv_x, 1.0 / inv_y          # hal::resize: scale = 1./inv_scale


def resize_nearest(img, dw, dh):
    """resizeNN: sx = min(cvFloor(dx * (1./inv_scale_x)), W-1), same for y (doubles)."""
    a, sq = _hwc(img)
    sh, sw = a.shape[:2]
    _, _, fx, fy = _scales(sw, sh, dw, dh)
    xs = np.array([min(int(np.floor(x * fx)), sw - 1) for x in range(dw)])
    ys = np.array([min(int(np.floor(y * fy)), sh - 1) for y in range(dh)])
    if (dw, dh) == (sw, sh):
        return img.copy()
    return _ret(a[ys][:, xs], sq)


# ---------------------------------------------------------------------------------------------
# INTER_AREA
# ---------------------------------------------------------------------------------------------

def area_is_fast(sw, sh, dw, dh):
    _, _, sx, sy = _scales(sw, sh, dw, dh)
    ix, iy = cv_round(sx), cv_round(sy)
    return abs(sx - ix) < DBL_EPSILON and abs(sy - iy) < DBL_EPSILON, ix, iy


def area_tab(ssize, dsize, scale):
    """computeResizeAreaTab (doubles; alpha rounded to float32). -> list of (dst, src, alpha)."""
    tab = []
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx1, sx2 = int(np.ceil(fsx1)), int(np.floor(fsx2))
        sx2 = min(sx2, ssize - 1)
        sx1 = min(sx1, sx2)
        if sx1 - fsx1 > 1e-3:
            tab.append((dx, sx1 - 1, F32((sx1 - fsx1) / cell)))
        for sx in range(sx1, sx2):
            tab.append((dx, sx, F32(1.0 / cell)))
        if fsx2 - sx2 > 1e-3:
            tab.append((dx, sx2, F32(min(min(fsx2 - sx2, 1.0), cell) / cell)))
    return tab


def resize_area(img, dw, dh):
    a, sq = _hwc(img)
    sh, sw, cn = a.shape
    if (dw, dh) == (sw, sh):
        return img.copy()
    inv_x, inv_y, scale_x, scale_y = _scales(sw, sh, dw, dh)
    fast, ix, iy = area_is_fast(sw, sh, dw, dh)
    if not (scale_x >= 1 and scale_y >= 1):
        return _ret(_resize_linear(a, dw, dh, area_mode=True), sq)
    if fast:
        out = np.zeros((dh, dw, cn), dtype=np.uint8)
        # resizeAreaFast_Invoker: dwidth1 = (W / ix) columns are full cells; rows whose cell
        # leaves the image (sy0 + iy > H) and the columns past dwidth1 are averaged over the
        # pixels inside (saturate_cast<uchar>((float)sum / count)); cells starting outside = 0.
        dwidth1 = sw // ix
        for dy in range(dh):
            sy0 = dy * iy
            if sy0 >= sh:
                continue
            w_full = dwidth1 if sy0 + iy <= sh else 0
            if w_full:
                blk = a[sy0:sy0 + iy, :w_full * ix].astype(np.int64)
                sums = blk.reshape(iy, w_full, ix, cn).sum(axis=(0, 2))
                if ix == 2 and iy == 2:       # ResizeAreaFastVec: (sum + 2) >> 2
                    out[dy, :w_full] = (sums + 2) >> 2
                else:                         # saturate_cast<uchar>(sum * (1.f/area)), float32
                    v = sums.astype(F32) * F32(F32(1.0) / F32(ix * iy))
                    out[dy, :w_full] = np.clip(np.rint(v), 0, 255)
            for dx in range(w_full, dw):
                sx0 = dx * ix
                blk = a[sy0:min(sy0 + iy, sh), sx0:min(sx0 + ix, sw)].astype(np.int64)
                cnt = blk.shape[0] * blk.shape[1]
                if cnt == 0:
                    continue
                v = blk.sum(axis=(0, 1)).astype(F32) / F32(cnt)
                out[dy, dx] = np.clip(np.rint(v), 0, 255)
        return _ret(out, sq)
    xtab = area_tab(sw, dw, scale_x)
    ytab = area_tab(sh, dh, scale_y)
    # horizontal: buf[di] = buf[di] + S[si] * alpha, float32, in xtab order, per source row
    src = a.astype(F32)
    buf = np.zeros((sh, dw, cn), dtype=F32)
    for (d, s, al) in xtab:
        buf[:, d, :] = buf[:, d, :] + src[:, s, :] * al
    out = np.zeros((dh, dw, cn), dtype=np.uint8)
    cur, acc = None, None
    for (d, s, be) in ytab:
        if d != cur:
            if cur is not None:
                out[cur] = np.clip(np.rint(acc), 0, 255)
            acc = buf[s] * be                  # inter_area::mul
            cur = d
        else:
            acc = acc + buf[s] * be            # inter_area::muladd (no FMA)
    out[cur] = np.clip(np.rint(acc), 0, 255)
    return _ret(out, sq)


# ---------------------------------------------------------------------------------------------
# INTER_LINEAR (fixed point), used by INTER_AREA when an axis enlarges
# ---------------------------------------------------------------------------------------------

def _resize_linear(a, dw, dh, area_mode=False):
    sh, sw, cn = a.shape
    inv_x, inv_y, scale_x, scale_y = _scales(sw, sh, dw, dh)

    def coords(n_dst, n_src, scale, inv, clamp):
        ofs, coef, xmax = [], [], n_dst
        for d in range(n_dst):
            if not area_mode:
                f = F32((d + 0.5) * scale - 0.5)
                s = int(np.floor(f))
                f = F32(f - F32(s))
            else:
                s = int(np.floor(d * scale))
                f = F32((d + 1) - (s + 1) * inv)
                f = F32(0.0) if f <= 0 else F32(f - F32(np.floor(f)))
            if clamp:
                if s < 0:
                    f, s = F32(0.0), 0
                if s + 1 >= n_src:
                    xmax = min(xmax, d)
                    if s >= n_src - 1:
                        f, s = F32(0.0), n_src - 1
            ofs.append(s)
            coef.append((cv_round(F32(F32(1.0) - f) * F32(INTER_RESIZE_COEF_SCALE)),
                         cv_round(f * F32(INTER_RESIZE_COEF_SCALE))))
        return ofs, coef, xmax

    xofs, alpha, xmax = coords(dw, sw, scale_x, inv_x, True)
    yofs, beta, _ = coords(dh, sh, scale_y, inv_y, False)
    src = a.astype(np.int64)
    hb = np.zeros((sh, dw, cn), dtype=np.int64)
    for d in range(dw):
        s = xofs[d]
        if d < xmax:
            hb[:, d] = src[:, s] * alpha[d][0] + src[:, s + 1] * alpha[d][1]
        else:
            hb[:, d] = src[:, s] * INTER_RESIZE_COEF_SCALE
    out = np.zeros((dh, dw, cn), dtype=np.uint8)
    for d in range(dh):
        r0 = min(max(yofs[d], 0), sh - 1)
        r1 = min(max(yofs[d] + 1, 0), sh - 1)
        b0, b1 = beta[d]
        v = (((b0 * (hb[r0] >> 4)) >> 16) + ((b1 * (hb[r1] >> 4)) >> 16) + 2) >> 2
        out[d] = np.clip(v, 0, 255)
    return out


def resize_linear(img, dw, dh):
    a, sq = _hwc(img)
    if (dw, dh) == (a.shape[1], a.shape[0]):
        return img.copy()
    return _ret(_resize_linear(a, dw, dh), sq)


# ---------------------------------------------------------------------------------------------
# INTER_CUBIC (OpenCV's own code path; IPP off)
# ---------------------------------------------------------------------------------------------

def cubic_coeffs(x):
    """interpolateCubic, float32 arithmetic in source order, A = -0.75 (no FMA)."""
    x = F32(x)
    A = F32(-0.75)
    one = F32(1)
    x1 = F32(x + one)
    c0 = F32(F32(F32(F32(F32(F32(A * x1) - F32(F32(5) * A)) * x1) + F32(F32(8) * A)) * x1) - F32(F32(4) * A))
    c1 = F32(F32(F32(F32(F32(F32(A + F32(2)) * x) - F32(A + F32(3))) * x) * x) + one)
    y = F32(one - x)
    c2 = F32(F32(F32(F32(F32(F32(A + F32(2)) * y) - F32(A + F32(3))) * y) * y) + one)
    c3 = F32(F32(F32(one - c0) - c1) - c2)
    return [c0, c1, c2, c3]


def _cubic_tab(n_dst, scale):
    ofs, coef = [], []
    for d in range(n_dst):
        f = F32((d + 0.5) * scale - 0.5)      # double, then (float)
        s = int(np.floor(f))
        f = F32(f - F32(s))
        ofs.append(s)
        coef.append([cv_round(c * F32(INTER_RESIZE_COEF_SCALE)) for c in cubic_coeffs(f)])
    return ofs, coef


def resize_cubic(img, dw, dh, vec=None):
    """vec=None: scalar fixed point; vec=(L, fma): the first (width*cn // L) * L values of
    each output row come from VResizeCubicVec_32s8u (float32, round half even)."""
    a, sq = _hwc(img)
    sh, sw, cn = a.shape
    if (dw, dh) == (sw, sh):
        return img.copy()
    _, _, scale_x, scale_y = _scales(sw, sh, dw, dh)
    xofs, alpha = _cubic_tab(dw, scale_x)
    yofs, beta = _cubic_tab(dh, scale_y)
    src = a.astype(np.int64)
    hb = np.zeros((sh, dw, cn), dtype=np.int64)
    for d in range(dw):
        for j in range(4):
            sx = min(max(xofs[d] - 1 + j, 0), sw - 1)   # replicate (HResizeCubic's +-cn walk)
            hb[:, d] += src[:, sx] * alpha[d][j]
    out = np.zeros((dh, dw, cn), dtype=np.uint8)
    width = dw * cn
    nvec = 0 if vec is None else (width // vec[0]) * vec[0] if width >= vec[0] else 0
    for d in range(dh):
        rows = [hb[min(max(yofs[d] - 1 + j, 0), sh - 1)].reshape(-1) for j in range(4)]
        b = beta[d]
        acc = sum(rows[j] * b[j] for j in range(4))
        v = np.clip((acc + (1 << 21)) >> 22, 0, 255)
        if nvec:
            scale = F32(1.0) / F32(INTER_RESIZE_COEF_SCALE * INTER_RESIZE_COEF_SCALE)
            bf = [F32(F32(bj) * scale) for bj in b]
            r = [rows[j][:nvec].astype(F32) for j in range(4)]
            if vec[1]:   # fma: exact in float64 (all terms are multiples of 2^-22, < 2^31)
                t = (r[3] * bf[3]).astype(F32)
                for j in (2, 1, 0):
                    t = (r[j].astype(np.float64) * np.float64(bf[j]) + t.astype(np.float64)).astype(F32)
            else:
                t = r[3] * bf[3]
                for j in (2, 1, 0):
                    t = r[j] * bf[j] + t
            v[:nvec] = np.clip(np.rint(t), 0, 255)
        out[d] = v.reshape(dw, cn)
    return _ret(out, sq)


# ---------------------------------------------------------------------------------------------
# morphology / Otsu (the extension's binary-map branch: nake_nms, lvmin_thin, THRESH_OTSU)
# ---------------------------------------------------------------------------------------------

def _shifted(x, k, fill):
    """Yield x shifted so that out[i, j] = x[i + u - ay, j + v - ax] for each kernel cell != 0
    (anchor at the centre; OpenCV does not reflect the kernel). Outside = fill."""
    kh, kw = k.shape
    ay, ax = kh // 2, kw // 2
    p = np.pad(x, [(ay, kh - 1 - ay), (ax, kw - 1 - ax)], constant_values=fill)
    h, w = x.shape
    for u in range(kh):
        for v in range(kw):
            if k[u, v]:
                yield p[u:u + h, v:v + w]


def erode(x, k):
    """cv2.erode(x, k) for uint8 HxW, default border (BORDER_CONSTANT with the morphology
    default value: outside counts as 255)."""
    out = np.full_like(x, 255)
    for s in _shifted(x, k, 255):
        out = np.minimum(out, s)
    return out


def dilate(x, k):
    """cv2.dilate(x, k): outside counts as 0."""
    out = np.zeros_like(x)
    for s in _shifted(x, k, 0):
        out = np.maximum(out, s)
    return out


def hitmiss(x, k):
    """cv2.morphologyEx(x, MORPH_HITMISS, k) for a 0/255 image, k in {-1, 0, 1}:
    erode(x, k == 1) & erode(~x, k == -1), each part all-255 when its mask is empty;
    outside the image counts as 255 in BOTH x and ~x (so a pattern may match at the border)."""
    k1, k2 = (k == 1).astype(np.uint8), (k == -1).astype(np.uint8)
    e1 = erode(x, k1) if k1.any() else np.full_like(x, 255)
    e2 = erode(255 - x, k2) if k2.any() else np.full_like(x, 255)
    return e1 & e2


def otsu_threshold(x):
    """getThreshVal_Otsu_8u (double arithmetic); returns the threshold t. THRESH_BINARY then
    gives 255 where x > t."""
    h = np.bincount(x.reshape(-1), minlength=256)
    scale = 1.0 / x.size
    mu = 0.0
    for i in range(256):
        mu += i * float(h[i])
    mu *= scale
    mu1 = q1 = 0.0
    max_sigma = max_val = 0.0
    eps = float(np.finfo(np.float32).eps)
    for i in range(256):
        p_i = h[i] * scale
        mu1 *= q1
        q1 += p_i
        q2 = 1.0 - q1
        if min(q1, q2) < eps or max(q1, q2) > 1.0 - eps:
            continue
        mu1 = (mu1 + i * p_i) / q1
        mu2 = (mu - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > max_sigma:
            max_sigma, max_val = sigma, float(i)
    return max_val


# ---------------------------------------------------------------------------------------------
# self-check
# ---------------------------------------------------------------------------------------------

def _rand_img(rng, h, w, cn, kind):
    import cv2
    if kind == "noise":
        im = rng.integers(0, 256, (h, w, cn), dtype=np.uint8)
    elif kind == "smooth":
        im = cv2.GaussianBlur(rng.integers(0, 256, (h, w, cn), dtype=np.uint8), (0, 0), 2.0)
    else:  # blocks: flat areas and hard edges
        im = np.kron(rng.integers(0, 4, (h // 4 + 1, w // 4 + 1, cn)) * 85, np.ones((4, 4, 1)))[:h, :w]
        im = im.astype(np.uint8)
    return np.ascontiguousarray(im[:, :, 0] if (cn == 1 and im.ndim == 3) else im)


def main():
    import cv2
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n = 60 if args.quick else 300
    bad = 0

    def report(name, ok, total, extra=""):
        print(f"{name:44s} {ok}/{total} identical {extra}")

    # Canny
    ok = 0
    for t in range(n):
        h, w = int(rng.integers(3, 70)), int(rng.integers(3, 70))
        cn = int(rng.choice([1, 3, 3, 4]))
        im = _rand_img(rng, h, w, cn, rng.choice(["noise", "smooth", "blocks"]))
        lo, hi = sorted(int(v) for v in rng.integers(1, 400, 2))
        ref = cv2.Canny(im, lo, hi)
        ok += np.array_equal(ref, canny(im, lo, hi))
    report("Canny (L1, aperture 3)", ok, n)
    bad += n - ok

    for ipp in (False, True):
        cv2.ipp.setUseIPP(ipp)
        tag = "IPP on " if ipp else "IPP off"
        ok = [0, 0, 0, 0]
        for t in range(n):
            h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
            x = (rng.random((h, w)) < rng.random()).astype(np.uint8) * 255
            k = rng.integers(-1, 2, (3, 3)).astype(np.int32)
            kb = (rng.random((3, 3)) < 0.6).astype(np.uint8)
            kb[1, 1] |= not kb.any()      # an all-zero kernel is degenerate in OpenCV (not modelled)
            ok[0] += np.array_equal(cv2.erode(x, kb), erode(x, kb))
            ok[1] += np.array_equal(cv2.dilate(x, kb), dilate(x, kb))
            ok[2] += np.array_equal(cv2.morphologyEx(x, cv2.MORPH_HITMISS, k), hitmiss(x, k))
            g = rng.integers(0, 256, (h, w)).astype(np.uint8) if t % 2 else \
                np.clip(rng.normal(rng.integers(0, 256), 40, (h, w)), 0, 255).astype(np.uint8)
            ok[3] += cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] == otsu_threshold(g)
        for name, c in zip(("erode", "dilate", "morphologyEx HITMISS", "threshold OTSU value"), ok):
            report(f"{name} {tag}", c, n)
            bad += n - c
        res = {}
        for t in range(n):
            sh, sw = int(rng.integers(2, 90)), int(rng.integers(2, 90))
            cn = int(rng.choice([1, 3, 3, 4]))
            im = _rand_img(rng, sh, sw, cn, rng.choice(["noise", "smooth", "blocks"]))
            mode = t % 6
            if mode == 0:      # integer shrink factors
                f = int(rng.integers(2, 5))
                dw, dh = max(1, sw // f), max(1, sh // f)
                im = np.ascontiguousarray(im[:dh * f, :dw * f])
            elif mode == 1:    # fractional shrink
                dw, dh = int(rng.integers(1, sw + 1)), int(rng.integers(1, sh + 1))
            elif mode == 2:    # enlarge
                dw, dh = int(rng.integers(sw, 3 * sw + 2)), int(rng.integers(sh, 3 * sh + 2))
            elif mode == 3:    # mixed
                dw, dh = int(rng.integers(sw, 2 * sw + 2)), int(rng.integers(1, sh + 1))
            elif mode == 4:    # exact 2x up
                dw, dh = 2 * sw, 2 * sh
            else:              # pad64-like: k = res / min side
                pres = int(rng.integers(8, 140))
                k = pres / min(sh, sw)
                dw, dh = int(np.round(sw * k)), int(np.round(sh * k))
            dw, dh = max(dw, 1), max(dh, 1)
            for name, flag, fns in (
                ("NEAREST", cv2.INTER_NEAREST, {"model": lambda: resize_nearest(im, dw, dh)}),
                ("AREA", cv2.INTER_AREA, {"model": lambda: resize_area(im, dw, dh)}),
                ("CUBIC", cv2.INTER_CUBIC, {"scalar": lambda: resize_cubic(im, dw, dh),
                                            "vec16fma": lambda: resize_cubic(im, dw, dh, (16, True)),
                                            "vec8": lambda: resize_cubic(im, dw, dh, (8, False))})):
                ref = cv2.resize(im, (dw, dh), interpolation=flag)
                for k, fn in fns.items():
                    r = res.setdefault((name, k), [0, 0, []])
                    r[1] += 1
                    got = fn()
                    if np.array_equal(ref, got):
                        r[0] += 1
                    elif len(r[2]) < 4:
                        r[2].append((sw, sh, cn, dw, dh, int(np.abs(ref.astype(int) - got).max()),
                                     int((ref != got).sum())))
        for (name, k), (okc, tot, ex) in sorted(res.items()):
            report(f"resize {name} [{k}] {tag}", okc, tot, ("e.g. (sw,sh,cn,dw,dh,maxdiff,count) " + str(ex)) if ex else "")
            if k == "model" or (k == "vec8" and not ipp):   # must match; IPP cubic is not modelled
                bad += tot - okc
    cv2.ipp.setUseIPP(True)
    print("OK: every modelled kernel matched" if bad == 0 else f"FAILED: {bad} mismatches")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
