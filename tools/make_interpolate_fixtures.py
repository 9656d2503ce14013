#!/usr/bin/env python3
"""Make the committed latent-upscale fixtures in Tests/Fixtures/interpolate/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_interpolate_fixtures.py [--out Tests/Fixtures/interpolate] [--check]

A1111 1.10's hires fix upscales the first-pass latent with
`torch.nn.functional.interpolate(samples, size=(h, w), mode=..., antialias=...)` (shared.latent_upscale_modes,
the oracle's reference.LATENT_UPSCALE_MODES), float32 on CPU, align_corners left at its default
(False for bilinear / bicubic; nearest modes take none). This writes:

  input-1x4x16x16.npy, input-2x4x16x20.npy   float32 N(0, 1) latents (numpy default_rng seeds 0 and 1)
  <input>-<mode>-<h>x<w>.npy                   F.interpolate(input, size=(h, w), mode, antialias), float32,
                                               for the six modes (MODES) and SIZES (up, 2x, mixed,
                                               down, one side unchanged); plus EXTRA: sizes with
                                               out_h + out_w > 128, where nearest / bilinear take
                                               PyTorch's other CPU kernel (the generic
                                               TensorIterator one instead of the channels-last one)
  index.json                                   every case: input, a1111_name, mode, antialias,
                                               align_corners, size, output file, sha256, the CPU
                                               kernel torch used, max |output|, and the numpy
                                               model's max abs error against torch, with the fmas
                                               where GCC put them (model_max_abs: 0 everywhere) and
                                               with none (plain_float32_max_abs)

torch.set_num_threads(1) (the kernels are per-element; threads do not change the values).
The script also runs model(), a numpy float32 transcription of PyTorch's CPU kernels
(aten/src/ATen/native/UpSample.h and cpu/UpSampleKernel.cpp), on every case and prints its
distance to torch: a spec for the Swift port (see tools/README.md "Latent upscale fixtures").
--check re-makes everything and compares with the committed files (exit 1 on any difference).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "Fixtures", "interpolate")

# A1111 shared.latent_upscale_modes: name -> (torch interpolate mode, antialias)
MODES = {
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False), "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False), "Latent (nearest-exact)": ("nearest-exact", False),
}
INPUTS = {"input-1x4x16x16": ((1, 4, 16, 16), 0), "input-2x4x16x20": ((2, 4, 16, 20), 1)}
SIZES = [(24, 24), (32, 32), (20, 26), (12, 12), (16, 40)]
# out_h + out_w > 128: nearest / nearest-exact / bilinear use the generic kernel (only these modes
# have two CPU kernels; bicubic and the antialiased modes have one)
EXTRA = [("input-1x4x16x16", (40, 90), ("Latent", "Latent (nearest)", "Latent (nearest-exact)"))]

f32 = np.float32


FUSED = [True]   # False: every fma below becomes a rounded product plus a rounded add ("plain" float32)


def fma(a, b, c):
    """float32 fused multiply-add a*b + c, one rounding (GCC contracts a*b + c into vfmadd in
    PyTorch's AVX2 kernels: -O2 with the default -ffp-contract=fast; where it did so was found by
    matching torch 2.15's x86-64 AVX2 wheel bit for bit). Emulated in float64: the product of two
    float32 is exact there and, for the magnitudes here, so is the sum."""
    if not FUSED[0]:
        return ((np.asarray(a, f32) * np.asarray(b, f32)).astype(f32) + np.asarray(c, f32)).astype(f32)
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(f32)


def slug(mode, aa):
    return mode + ("-aa" if aa else "")


# ---------------------------------------------------------------------------------------------
# numpy float32 model of PyTorch's CPU kernels (NCHW contiguous float32, align_corners=False,
# size given so scales are None). Every scalar is float32 unless the C++ promotes to double.
# ---------------------------------------------------------------------------------------------

def scale_of(n_in, n_out):
    """compute_scales_value<float>: static_cast<float>(in) / out, a float32 division."""
    return f32(f32(n_in) / f32(n_out))


def nearest_index(n_in, n_out):
    """upsample_nearest2d. Small outputs (out_h + out_w <= 128) use cpu_upsample_nearest_channels_last
    with UpSample.h nearest_idx: out == in -> i; out == 2*in -> i >> 1; else
    min(floorf(float(i) * scale), in - 1). Larger outputs use HelperInterpNearest: the same
    min(floorf(scale * float(i)), in - 1) (checked identical for in <= 256, out <= 1024)."""
    i = np.arange(n_out)
    if n_out == n_in:
        return i
    if n_out == 2 * n_in:
        return i >> 1
    s = scale_of(n_in, n_out)
    return np.minimum(np.floor(i.astype(f32) * s).astype(np.int64), n_in - 1)


def nearest_exact_index(n_in, n_out, generic=False):
    """_upsample_nearest_exact2d. Channels-last kernel (out_h + out_w <= 128): UpSample.h
    nearest_exact_idx = min(floorf(float((double)(i + 0.5) * (double)scale)), in - 1) (no 1x / 2x
    shortcut). Generic kernel (larger outputs): src = max(fma(scale, i + 0.5f, -0.5f), 0) in float,
    min(floorf(src + 0.5f), in - 1). They differ only for out / in >= 20.5 (217 indices over
    in <= 256, out <= 1024, e.g. in 2 -> out 41 at i = 20)."""
    i = np.arange(n_out)
    s = scale_of(n_in, n_out)
    if generic:
        src = np.maximum(fma(s, i.astype(f32) + f32(0.5), f32(-0.5)), f32(0))
        return np.minimum(np.floor((src + f32(0.5)).astype(f32)).astype(np.int64), n_in - 1)
    return np.minimum(np.floor(((i + 0.5) * np.float64(s)).astype(f32)).astype(np.int64), n_in - 1)


def linear_taps(n_in, n_out, fused=True):
    """compute_source_index_and_lambda<float, float> (UpSample.h): (i0, i1, l0, l1) per output index.
    out == in: copy (i0 = i1 = i, l0 = 1, l1 = 0). Else src = scale * (i + 0.5f) - 0.5f in float,
    fused into one fma in the channels-last kernel, two roundings in the generic one (as compiled);
    src < 0 -> 0; i0 = min(floorf(src), in - 1); l1 = clamp(src - i0, 0, 1); i1 = i0 + (i0 < in - 1);
    l0 = 1 - l1."""
    i = np.arange(n_out)
    if n_out == n_in:
        return i, i, np.ones(n_out, f32), np.zeros(n_out, f32)
    s = scale_of(n_in, n_out)
    h = i.astype(f32) + f32(0.5)
    real = fma(s, h, f32(-0.5)) if fused else ((s * h).astype(f32) - f32(0.5)).astype(f32)
    real = np.where(real < 0, f32(0), real).astype(f32)      # not cubic: negative -> 0
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)  # guard_index_and_lambda
    l1 = np.clip(real - i0.astype(f32), f32(0), f32(1)).astype(f32)
    i1 = i0 + (i0 < n_in - 1)
    l0 = (f32(1) - l1).astype(f32)
    return i0, i1, l0, l1


def bilinear(x, oh, ow):
    """upsample_bilinear2d (antialias=False), two CPU kernels with the same taps:
    out_h + out_w <= 128 (or a channels-last input with C > 3): cpu_upsample_linear_channels_last,
    weights w00 = h0*w0, w01 = h0*w1, w10 = h1*w0, w11 = h1*w1 (float products), C = 4 < the vector
    width so the scalar tail loop, compiled as fma(x11, w11, fma(x10, w10, fma(x00, w00, x01*w01))).
    Larger outputs: the generic TensorIterator kernel (unfused source index), per row tap
    t_r = fma(x_r0, w0, x_r1*w1), out = fma(t0, h0, t1*h1)."""
    cl = oh + ow <= 128
    h0, h1, hl0, hl1 = linear_taps(x.shape[2], oh, fused=cl)
    w0, w1, wl0, wl1 = linear_taps(x.shape[3], ow, fused=cl)
    a, b = x[:, :, h0, :], x[:, :, h1, :]
    ha, hb = hl0[:, None], hl1[:, None]
    x00, x01, x10, x11 = a[..., w0], a[..., w1], b[..., w0], b[..., w1]
    if cl:
        w00, w01, w10, w11 = [(p * q).astype(f32) for p, q in ((ha, wl0), (ha, wl1), (hb, wl0), (hb, wl1))]
        return fma(x11, w11, fma(x10, w10, fma(x00, w00, (x01 * w01).astype(f32))))
    t0 = fma(x00, wl0, (x01 * wl1).astype(f32))
    t1 = fma(x10, wl0, (x11 * wl1).astype(f32))
    return fma(t0, ha, (t1 * hb).astype(f32))


def cc1(x, A):
    """cubic_convolution1 (|x| <= 1): ((A + 2) x - (A + 3)) x x + 1, float; as compiled:
    t = (A+2)*x - (A+3) (fused or not: same values here), then (t*x)*x + 1 unfused."""
    t = fma(A + f32(2), x, -(A + f32(3)))
    return ((t * x).astype(f32) * x + f32(1)).astype(f32)


def cc2(x, A):
    """cubic_convolution2 (1 <= |x| <= 2): ((A x - 5A) x + 8A) x - 4A, float; as compiled:
    u = fma(fma(A, x, -5A), x, 8A), then u*x - 4A unfused."""
    u = fma(fma(A, x, -f32(5) * A), x, f32(8) * A)
    return ((u * x).astype(f32) - f32(4) * A).astype(f32)


def cubic_taps(n_in, n_out):
    """HelperInterpCubic::compute_indices_weights (float): 4 taps, A = -0.75, no out == in shortcut.
    src = fma(scale, i + 0.5f, -0.5f) (no clamp at 0: negatives kept); i0 = min(floorf(src), in - 1);
    t = clamp(src - i0, 0, 1); weights [cc2(t + 1), cc1(t), cc1(1 - t), cc2((1 - t) + 1)] for the
    input indices clamp(i0 - 1 + k, 0, in - 1), k = 0..3 (edge replicate)."""
    i = np.arange(n_out)
    s = scale_of(n_in, n_out)
    real = fma(s, i.astype(f32) + f32(0.5), f32(-0.5))
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    t = np.clip(real - i0.astype(f32), f32(0), f32(1)).astype(f32)
    A = f32(-0.75)
    u = (f32(1) - t).astype(f32)
    w = [cc2((t + f32(1)).astype(f32), A), cc1(t, A), cc1(u, A), cc2((u + f32(1)).astype(f32), A)]
    idx = [np.clip(i0 + j - 1, 0, n_in - 1) for j in range(4)]
    return idx, w


def dot4(xs, ws):
    """Interpolate<.., 4>::eval as compiled (loop unrolled): fma(x3, w3, fma(x2, w2, fma(x0, w0, x1*w1)))."""
    acc = fma(xs[0], ws[0], (xs[1] * ws[1]).astype(f32))
    return fma(xs[3], ws[3], fma(xs[2], ws[2], acc))


def bicubic(x, oh, ow):
    """upsample_bicubic2d (antialias=False; float has only the generic kernel): per output element,
    for each of the 4 row taps r the width sum t_r = dot4(x[r, taps], w), then out = dot4(t, h)."""
    hi, hw = cubic_taps(x.shape[2], oh)
    wi, ww = cubic_taps(x.shape[3], ow)
    ts = [dot4([x[:, :, hi[r], :][..., wi[k]] for k in range(4)], ww) for r in range(4)]
    return dot4(ts, [h[:, None] for h in hw])


def aa_filter_linear(x):
    x = np.abs(x)
    return np.where(x < 1, (1.0 - x.astype(np.float64)).astype(f32), f32(0)).astype(f32)


def aa_filter_cubic(x):
    """HelperInterpCubic::aa_filter: Keys cubic with A = -0.5 (PIL's bicubic; plain bicubic above uses
    -0.75, OpenCV's) on |x|: |x| < 1 -> cc1, |x| < 2 -> cc2, else 0. As compiled here the
    contractions differ from the -0.75 coefficients above: cc1 = fma(fma(A+2, x, -(A+3)) * x, x, 1),
    cc2 = fma(fma(fma(A, x, -5A), x, 8A), x, -4A)."""
    A = f32(-0.5)
    x = np.abs(np.asarray(x, f32))
    t = fma(A + f32(2), x, -(A + f32(3)))
    c1 = fma((t * x).astype(f32), x, f32(1))
    c2 = fma(fma(fma(A, x, -f32(5) * A), x, f32(8) * A), x, -f32(4) * A)
    return np.where(x < 1, c1, np.where(x < 2, c2, f32(0))).astype(f32)


def aa_taps(n_in, n_out, interp_size, filt):
    """HelperInterpBase::_compute_index_ranges_weights / _compute_indices_min_size_weights_aa, float:
    support = scale >= 1 ? (interp_size/2) * scale : interp_size/2; max_interp_size = ceil(support)*2+1;
    center = float(scale * (i + 0.5) in double); invscale = scale >= 1 ? float(1.0/scale) : 1;
    xmin = max((int64)(double(center - support) + 0.5), 0) (truncation);
    xsize = clamp(min((int64)(double(center + support) + 0.5), in) - xmin, 0, max_interp_size);
    w_j = filter(float((double(float(j + xmin) - center) + 0.5) * invscale)), j < xsize;
    normalised by their float sum (accumulated in order) when it is not 0."""
    s = scale_of(n_in, n_out)
    support = f32(interp_size * 0.5 * s) if s >= 1 else f32(interp_size * 0.5)
    max_size = int(np.ceil(support)) * 2 + 1
    invscale = f32(1.0 / np.float64(s)) if s >= 1 else f32(1)
    xmins, ws = [], []
    for i in range(n_out):
        center = f32(np.float64(s) * (i + 0.5))
        xmin = max(int(np.float64(f32(center - support)) + 0.5), 0)
        xsize = min(int(np.float64(f32(center + support)) + 0.5), n_in) - xmin
        xsize = min(max(xsize, 0), max_size)
        j = np.arange(xsize)
        arg = ((((j + xmin).astype(f32) - center).astype(np.float64) + 0.5) * np.float64(invscale)).astype(f32)
        w = filt(arg)
        total = f32(0)
        for v in w:
            total = f32(total + v)
        if total != 0:
            w = (w / total).astype(f32)
        xmins.append(xmin)
        ws.append(w)
    return xmins, ws


def aa_pass(x, axis, n_out, interp_size, filt):
    """One separable pass: out[..., i] = sum_j x[xmin + j] * w_j along `axis`, float, as compiled:
    acc = x0*w0, then the next 4*floor((n-1)/4) terms added unfused (product rounded, then add:
    GCC's in-order vectorised reduction), the remaining (n-1) mod 4 terms fused (acc = fma(x_j, w_j, acc))."""
    n_in = x.shape[axis]
    xmins, ws = aa_taps(n_in, n_out, interp_size, filt)
    x = np.moveaxis(x, axis, -1)
    out = np.zeros(x.shape[:-1] + (n_out,), f32)
    for i in range(n_out):
        w, xm = ws[i], xmins[i]
        if len(w) == 0:
            continue
        acc = (x[..., xm] * w[0]).astype(f32)
        plain = 4 * ((len(w) - 1) // 4)
        for j in range(1, len(w)):
            if j <= plain:
                acc = (acc + (x[..., xm + j] * w[j]).astype(f32)).astype(f32)
            else:
                acc = fma(x[..., xm + j], w[j], acc)
        out[..., i] = acc
    return np.moveaxis(out, -1, axis)


def antialiased(x, oh, ow, interp_size, filt):
    """separable_upsample_generic_Nd_kernel_impl: output shape == input shape -> copy; else the width
    pass first (if the width changes, into a float32 [N, C, H_in, W_out] buffer), then the height
    pass (if the height changes). Taps never leave [0, in): no edge clamping, the weights are
    renormalised instead."""
    if x.shape[3] != ow:
        x = aa_pass(x, 3, ow, interp_size, filt)
    if x.shape[2] != oh:
        x = aa_pass(x, 2, oh, interp_size, filt)
    return x.copy()


def model(x, size, mode, aa):
    oh, ow = size
    if mode == "nearest":
        return x[:, :, nearest_index(x.shape[2], oh)][..., nearest_index(x.shape[3], ow)]
    if mode == "nearest-exact":
        g = oh + ow > 128
        return x[:, :, nearest_exact_index(x.shape[2], oh, g)][..., nearest_exact_index(x.shape[3], ow, g)]
    if mode == "bilinear":
        return antialiased(x, oh, ow, 2, aa_filter_linear) if aa else bilinear(x, oh, ow)
    if mode == "bicubic":
        return antialiased(x, oh, ow, 4, aa_filter_cubic) if aa else bicubic(x, oh, ow)
    raise ValueError(mode)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    files = {}   # name -> array
    cases = []
    inputs = {}
    for name, (shape, seed) in INPUTS.items():
        inputs[name] = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        files[name + ".npy"] = inputs[name]
    plan = [(inp, size, a1111) for inp in INPUTS for a1111 in MODES for size in SIZES]
    plan += [(inp, size, a1111) for inp, size, names in EXTRA for a1111 in names]
    worst = 0.0
    for inp, size, a1111 in plan:
        mode, aa = MODES[a1111]
        x = inputs[inp]
        y = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode, antialias=aa).numpy()
        assert y.dtype == np.float32 and y.shape == x.shape[:2] + size
        fn = f"{inp}-{slug(mode, aa)}-{size[0]}x{size[1]}.npy"
        files[fn] = y
        m = model(x, size, mode, aa)
        err = np.abs(m.astype(np.float64) - y.astype(np.float64))
        FUSED[0] = False
        plain_err = float(np.abs(model(x, size, mode, aa).astype(np.float64) - y.astype(np.float64)).max())
        FUSED[0] = True
        ymax = float(np.abs(y).max())
        rel = float(err.max()) / ymax
        worst = max(worst, rel)
        kernel = ("generic" if size[0] + size[1] > 128 else "channels-last") if mode != "bicubic" and not aa else (
            "separable-aa" if aa else "generic")
        cases.append(dict(input=inp + ".npy", input_shape=list(x.shape), a1111_name=a1111, mode=mode, antialias=aa,
                          align_corners=None if mode.startswith("nearest") else False, size=list(size),
                          output=fn, output_shape=list(y.shape), cpu_kernel=kernel,
                          output_max_abs=ymax, model_max_abs=float(err.max()), model_bit_exact=bool(err.max() == 0),
                          plain_float32_max_abs=plain_err))
        print(f"{fn:48} model max|d| {err.max():.2e}{' (bit-exact)' if err.max() == 0 else ''}, "
              f"plain float32 {plain_err:.2e} (max|y| {ymax:.2f})")
    print(f"numpy model worst max|d| / max|y| {worst:.2e}")
    index = {"made_by": "tools/make_interpolate_fixtures.py",
             "torch": torch.__version__, "numpy": np.__version__, "threads": 1,
             "call": "torch.nn.functional.interpolate(torch.from_numpy(input), size=size, mode=mode, antialias=antialias)",
             "inputs": {k + ".npy": {"shape": list(s), "rng": f"numpy.random.default_rng({seed}).standard_normal(shape, dtype=float32)"}
                        for k, (s, seed) in INPUTS.items()},
             "cases": cases}
    bad = 0
    if args.check:
        for fn, arr in files.items():
            p = os.path.join(args.out, fn)
            if not os.path.exists(p) or not np.array_equal(np.load(p), arr):
                print("DIFFERS:", fn)
                bad += 1
        print("check:", "OK" if not bad else f"{bad} file(s) differ")
        sys.exit(1 if bad else 0)
    os.makedirs(args.out, exist_ok=True)
    for fn, arr in files.items():
        np.save(os.path.join(args.out, fn), arr)
    for c in cases:
        c["sha256"] = sha256_file(os.path.join(args.out, c["output"]))
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
    print(f"wrote {len(files)} arrays and index.json to {args.out}")


if __name__ == "__main__":
    main()
