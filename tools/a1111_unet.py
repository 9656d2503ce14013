"""A1111 1.10's UNet size rule for images that are not multiples of 64, patched into diffusers' UNet2DConditionModel.

The oracle (REF/reference.py, REF/sd_ldm.py) runs the UNet as diffusers' UNet2DConditionModel. When a latent side is not
a multiple of 8 (image side not a multiple of 64) a downsampling rounds up (ceil(n / 2)) and the up path no longer
meets the skips at twice its size. diffusers then passes `upsample_size` (the next skip's size) to every up block's
Upsample2D, which interpolates straight to that size. A1111 1.10 runs ldm's openaimodel.UNetModel with
modules/sd_hijack_unet.py's `openaimodel.th = TorchHijackForUnet()`:

  * ldm's Upsample always doubles: F.interpolate(x, scale_factor=2, mode="nearest"), then its 3x3 conv;
  * at the next `h = th.cat([h, hs.pop()], dim=1)`, TorchHijackForUnet.cat nearest-resizes h (the first tensor) to
    the popped skip's spatial size when they differ: F.interpolate(h, skip.shape[-2:], mode="nearest").

apply() reproduces that in diffusers 0.42 (checked against its source):

  * Upsample2D.forward ignores `output_size` (always x2 nearest, then conv);
  * the up blocks' forward functions (CrossAttnUpBlock2D, UpBlock2D and the other up blocks of unet_2d_blocks that
    pop res_hidden_states_tuple) run with a module-global `torch` whose `cat` is TorchHijackForUnet.cat: for
    `torch.cat([hidden_states, res_hidden_states], dim=1)` -- hidden_states is `a`, the popped residual `b` -- a is
    nearest-resized to b's spatial size when they differ. Every other torch attribute is torch's own.

For latents whose sides are multiples of 8 nothing changes: diffusers passes no upsample_size and every concatenation
already matches (byte-identical goldens). Global and idempotent; remove() undoes it. No GPU, no other dependency.
"""

import contextlib
import types

import torch

UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D",
             "AttnSkipUpBlock2D", "SkipUpBlock2D")

_saved = {}


class TorchHijackForUnet:
    """modules/sd_hijack_unet.py (A1111 1.10): torch, but cat resizes the first of two tensors to the second's size."""

    def __getattr__(self, item):
        if item == "cat":
            return self.cat
        if hasattr(torch, item):
            return getattr(torch, item)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{item}'")

    def cat(self, tensors, *args, **kwargs):
        if len(tensors) == 2:
            a, b = tensors
            if a.shape[-2:] != b.shape[-2:]:
                a = torch.nn.functional.interpolate(a, b.shape[-2:], mode="nearest")
            tensors = (a, b)
        return torch.cat(tensors, *args, **kwargs)


def applied():
    return bool(_saved)


def apply():
    """Patch diffusers (process-wide) to A1111's rule; a second call does nothing."""
    if _saved:
        return
    from diffusers.models import upsampling as UP
    from diffusers.models.unets import unet_2d_blocks as B

    orig_up = UP.Upsample2D.forward

    def upsample_forward(self, hidden_states, output_size=None, *args, **kwargs):
        # ldm Upsample: always F.interpolate(x, scale_factor=2, mode="nearest"), then the conv
        return orig_up(self, hidden_states, None, *args, **kwargs)

    upsample_forward.__wrapped__ = orig_up
    _saved[(UP.Upsample2D, "forward")] = orig_up
    UP.Upsample2D.forward = upsample_forward

    hijacked_globals = dict(vars(B))
    hijacked_globals["torch"] = TorchHijackForUnet()
    for name in UP_BLOCKS:
        cls = getattr(B, name, None)
        if cls is None:
            continue
        f = cls.__dict__["forward"]
        g = types.FunctionType(f.__code__, hijacked_globals, f.__name__, f.__defaults__, f.__closure__)
        g.__kwdefaults__, g.__qualname__, g.__doc__ = f.__kwdefaults__, f.__qualname__, f.__doc__
        g.__wrapped__ = f
        _saved[(cls, "forward")] = f
        cls.forward = g


def remove():
    for (cls, attr), f in _saved.items():
        setattr(cls, attr, f)
    _saved.clear()


@contextlib.contextmanager
def patched(on=True):
    """with patched(): ... A1111's rule; with patched(False): ... diffusers' own (the previous state is restored)."""
    was = applied()
    (apply if on else remove)()
    try:
        yield
    finally:
        (apply if was else remove)()


# ---------------------------------------------------------------------------- self-check against ldm's own UNetModel

def stub_omegaconf():
    """ldm's openaimodel imports omegaconf only for an isinstance check: a stub when it is not installed."""
    import sys
    try:
        import omegaconf.listconfig  # noqa: F401
    except ImportError:
        stub = types.ModuleType("omegaconf.listconfig")
        stub.ListConfig = type("ListConfig", (list,), {})
        sys.modules.setdefault("omegaconf", types.ModuleType("omegaconf"))
        sys.modules["omegaconf.listconfig"] = stub


def _ldm_unet(src, yaml_path, ldm_sd):
    """ldm's openaimodel.UNetModel from a Stability-AI/stablediffusion checkout (A1111's
    repositories/stable-diffusion-stability-ai), float32, with A1111's `openaimodel.th = TorchHijackForUnet()`."""
    import os
    import sys
    import yaml
    sys.path.insert(0, os.path.abspath(src))
    stub_omegaconf()
    from ldm.modules.diffusionmodules import openaimodel
    openaimodel.th = TorchHijackForUnet()  # modules/sd_hijack_unet.py
    with open(yaml_path) as f:
        params = dict(yaml.safe_load(f)["model"]["params"]["unet_config"]["params"])
    params.update(use_fp16=False, use_checkpoint=False)  # A1111 --no-half / float32
    lu = openaimodel.UNetModel(**params).eval()
    pre = "model.diffusion_model."
    lu.load_state_dict({k[len(pre):]: v.float() for k, v in ldm_sd.items() if k.startswith(pre)}, strict=True)
    return lu


def main():
    """python tools/a1111_unet.py --ref REF --ldm-src STABLEDIFFUSION_DIR   (einops on PYTHONPATH)

    For each tiny checkpoint (SD 1.5, SD 2, SD 1.5 inpainting), latent sizes divisible by 8 and not: ldm UNetModel +
    A1111's cat hijack vs diffusers' UNet with apply() (must agree to float32 rounding, rel L2 < 1e-4) and vs
    diffusers' own rule; for latents divisible by 8 the patched and unpatched outputs must be bit-identical."""
    import argparse
    import os
    import sys
    ap = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--ldm-src", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.abspath(args.ref))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    torch.set_num_threads(args.threads)
    from safetensors.torch import load_file
    import sd_ldm
    import make_sd2_checkpoint as SD2
    models = os.path.join(repo, "Tests", "Fixtures", "models")
    # (latent H, W): 128x160 px, 128x96 px (H x W), 96x128, 153x192 (hires second pass), 160x160; 128x128, 64x64
    sizes = [(16, 20), (12, 16), (16, 12), (19, 24), (20, 20), (16, 16), (8, 8)]
    worst, failures = 0.0, 0
    for stem, loader in (("tiny-sd15", sd_ldm.load_checkpoint), ("tiny-sd2", SD2.load_checkpoint),
                         ("tiny-sd15-inpainting", sd_ldm.load_checkpoint)):
        path = os.path.join(models, stem + ".safetensors")
        cfg, _, unet, _, _ = loader(path)
        unet = unet.float().eval()
        lu = _ldm_unet(args.ldm_src, os.path.join(models, stem + ".yaml"), load_file(path))
        cin, ctx_dim = unet.config.in_channels, unet.config.cross_attention_dim
        for h, w in sizes:
            g = torch.Generator().manual_seed(h * 100 + w)
            x = torch.randn(2, cin, h, w, generator=g)
            ctx = torch.randn(2, 77, ctx_dim, generator=g)
            t = torch.tensor([981.0, 33.5])
            with torch.no_grad():
                ref = lu(x, t, context=ctx)
                with patched(True):
                    ours = unet(x, t, encoder_hidden_states=ctx).sample
                with patched(False):
                    plain = unet(x, t, encoder_hidden_states=ctx).sample
            r = float((ours - ref).norm() / ref.norm())
            r_plain = float((plain - ref).norm() / ref.norm())
            same = torch.equal(ours, plain)
            # float32 rounding: ~1e-6, up to ~7e-5 for SD 2 at 8x8 (1x1 deepest level), whichever rule is patched in
            ok = r < 1e-4 and (same if h % 8 == 0 and w % 8 == 0 else True)
            failures += not ok
            worst = max(worst, r)
            print(f"{stem:22} latent {h:2}x{w:2}: patched diffusers vs ldm+hijack rel L2 {r:.2e}; diffusers' own rule "
                  f"vs ldm+hijack {r_plain:.2e}; patched == unpatched: {same}  {'ok' if ok else 'FAIL'}", flush=True)
    print(f"worst patched-vs-ldm rel L2 {worst:.2e}; {'all ok' if not failures else f'{failures} FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
