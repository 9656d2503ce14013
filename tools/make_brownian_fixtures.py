#!/usr/bin/env python3
"""Fixtures for Atelier's Brownian-tree noise (the SDE samplers' noise_sampler), made with the
real torchsde 0.2.6 and numpy. Run by hand with the reference venv (tools/README.md):

    REF_VENV/bin/python tools/make_brownian_fixtures.py

Writes Tests/Fixtures/noise/brownian/:
  seedsequence.json   numpy SeedSequence(entropy, spawn_key, pool_size).generate_state(n) for the
                      entropies / spawn keys / pool sizes torchsde uses (and a few more)
  <case>.npy          k-diffusion's BrownianTreeNoiseSampler as A1111 builds it (one
                      torchsde.BrownianTree(t0=sigma_min, w0=zeros[4,h,w], t1=sigma_max, entropy=seed)
                      per image, cpu), called on the (sigma, sigma_next) pairs listed in cases.json,
                      stacked: [calls, batch, 4, h, w] float32
  <case>-increments.npy  the same calls' W(sigma_next) - W(sigma) before the division by
                      sqrt|sigma_next - sigma| (bit for bit; the division's sqrt is MKL's on PyTorch's CPU
                      build, within 1 ulp but not always correctly rounded)
  nv-*.npy            the same with A1111's patch of torchsde (`_randn` = its `randn_local`, which follows
                      randn_source): NV = A1111's Philox (the oracle's noise.PhiloxGenerator; --ref REF)
  cases.json          per case: seeds, shape, randn_source, sigma_min, sigma_max, the call pairs (float32 values as
                      Python floats) and the file name
"""
import json
import os
import sys

import numpy as np
import torch
import torchsde

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "noise", "brownian")


class NoiseSampler:
    """k-diffusion BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=[seeds], cpu=True) (BatchedBrownianTree)."""

    def __init__(self, x, sigma_min, sigma_max, seeds):
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.sign = 1 if t0 < t1 else -1
        lo, hi = (t0, t1) if t0 < t1 else (t1, t0)
        w0 = torch.zeros_like(x)[0]
        self.trees = [torchsde.BrownianTree(lo.cpu(), w0.cpu(), hi.cpu(), entropy=s) for s in seeds]

    def increments(self, sigma, sigma_next):
        """the trees' W(sigma_next) - W(sigma), before the division"""
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (a, b, 1) if a < b else (b, a, -1)
        return torch.stack([tree(lo.cpu().float(), hi.cpu().float()) for tree in self.trees]) * (self.sign * sign)

    def __call__(self, sigma, sigma_next):
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        return self.increments(sigma, sigma_next) / (b - a).abs().sqrt()


def karras(n, smin, smax, rho=7.0):
    ramp = torch.linspace(0, 1, n)
    mn, mx = smin ** (1 / rho), smax ** (1 / rho)
    return torch.cat([(mx + ramp * (mn - mx)) ** rho, torch.zeros(1)]).float()


def exponential(n, smin, smax):
    s = torch.linspace(np.log(smax), np.log(smin), n).exp()
    return torch.cat([s, torch.zeros(1)]).float()


def pairs_plain(sigmas):
    """(sigma_i, sigma_i+1) for every step into a positive sigma (2M SDE / 3M SDE)."""
    return [(sigmas[i], sigmas[i + 1]) for i in range(len(sigmas) - 1) if sigmas[i + 1] > 0]


def pairs_dpmpp_sde(sigmas):
    """DPM++ SDE's two calls per step: (σ(t), σ(s)) then (σ(t), σ(t_next)), σ(t) = exp(-(-log σ))."""
    out = []
    sfn = lambda t: t.neg().exp()  # noqa: E731
    tfn = lambda s: s.log().neg()  # noqa: E731
    for i in range(len(sigmas) - 1):
        if sigmas[i + 1] == 0:
            continue
        t, t_next = tfn(sigmas[i]), tfn(sigmas[i + 1])
        h = t_next - t
        s = t + h * 0.5
        out.append((sfn(t), sfn(s)))
        out.append((sfn(t), sfn(t_next)))
    return out


def use_randn_source(source, ref):
    """A1111's sd_samplers_common patch: torchsde._brownian.brownian_interval._randn = randn_local(seed, size)."""
    import torchsde._brownian.brownian_interval as bi
    if not hasattr(bi, "_atelier_original_randn"):
        bi._atelier_original_randn = bi._randn
    if source == "CPU":
        bi._randn = bi._atelier_original_randn
        return
    sys.path.insert(0, ref)
    import noise as N
    bi._randn = lambda size, dtype, device, seed: torch.from_numpy(N.PhiloxGenerator(int(seed)).randn(size)).to(dtype)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=os.path.join(ROOT, "..", "shared", "ref"), help="the oracle (for NV's Philox)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    # numpy's SeedSequence as torchsde uses it (pool 24; spawn keys (key, depth)), plus the default pool of 4
    ss = []
    for entropy, spawn_key, pool, n in ((0, (), 4, 4), (42, (), 24, 3), (42, (1, 1), 24, 4), (3_000_000_000, (), 24, 3),
                                        (4294967295, (5, 3), 24, 4), (7, (123456, 17), 24, 4), (2 ** 40 + 3, (), 4, 4),
                                        (12345, (0, 0), 24, 4), (1, (1 << 33, 34), 24, 4)):
        seq = np.random.SeedSequence(entropy=entropy, spawn_key=spawn_key, pool_size=pool)
        ss.append({"entropy": entropy, "spawn_key": list(spawn_key), "pool_size": pool,
                   "state": [int(v) for v in seq.generate_state(n)]})
    with open(os.path.join(OUT, "seedsequence.json"), "w") as f:
        json.dump(ss, f, indent=1)

    model_sigmas = None
    cases = {}
    # the tiny model's schedule ends (sigma_min / sigma_max of the SD 1.x discrete schedule, float32)
    ac = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)
    model_sigmas = (((1 - ac) / ac) ** 0.5).float()
    smin, smax = float(model_sigmas[0]), float(model_sigmas[-1])
    for name, source, seeds, shape, sigmas, pairs in (
            ("dpmpp_sde-karras-10", "CPU", [42], (4, 16, 16), karras(10, smin, smax), pairs_dpmpp_sde),
            ("dpmpp_2m_sde-exp-12", "CPU", [1234567], (4, 16, 16), exponential(12, smin, smax), pairs_plain),
            ("batch2-exp-6", "CPU", [4294967295, 7], (4, 8, 12), exponential(6, smin, smax), pairs_plain),
            ("small-3x3", "CPU", [3], (4, 3, 3), karras(5, smin, smax), pairs_dpmpp_sde),
            ("nv-dpmpp_sde-karras-8", "NV", [42, 43], (4, 8, 8), karras(8, smin, smax), pairs_dpmpp_sde)):
        use_randn_source(source, args.ref)
        positive = sigmas[sigmas > 0]
        x = torch.zeros((len(seeds),) + shape)
        ns = NoiseSampler(x, positive.min(), sigmas.max(), seeds)
        calls = pairs(sigmas)
        w = torch.stack([ns(a, b) for a, b in calls])
        np.save(os.path.join(OUT, name + ".npy"), w.numpy().astype(np.float32))
        raw = torch.stack([ns.increments(a, b) for a, b in calls])
        np.save(os.path.join(OUT, name + "-increments.npy"), raw.numpy().astype(np.float32))
        cases[name] = {"seeds": seeds, "shape": list(shape), "randn_source": source, "sigma_min": float(positive.min()), "sigma_max": float(sigmas.max()),
                       "pairs": [[float(a), float(b)] for a, b in calls], "file": name + ".npy"}
    use_randn_source("CPU", args.ref)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"torchsde": torchsde.__version__, "torch": torch.__version__, "cases": cases}, f, indent=1)
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
