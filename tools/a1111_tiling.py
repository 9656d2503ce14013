"""A1111 1.10's "Tiling" (seamless textures), patched into the oracle (REF/reference.py), which does not model it.

What A1111 does (modules/sd_hijack.py, modules/processing.py of 1.10.1, read, not run):
  * StableDiffusionModelHijack.hijack flattens the whole LatentDiffusion model (`flatten(m)`: UNet, VAE encoder and
    decoder, text encoder) into self.layers. process_images_inner calls apply_circular(p.tiling) before sampling
    (p.tiling = opts.tiling when the request leaves it None): every layer whose type is exactly torch.nn.Conv2d gets
    padding_mode = 'circular' (and 'zeros' again for a job without tiling).
  * torch's Conv2d with padding_mode 'circular' pads its input with F.pad(mode='circular') by its own padding and
    convolves with no padding: a 3x3 conv with padding 1 (UNet, VAE, the UNet's stride-2 downsamplers) wraps around
    the edges; 1x1 convs (padding 0) are unchanged; the VAE encoder's downsamplers pad (0, 1, 0, 1) with zeros
    themselves (F.pad constant) and have conv padding 0, so they are unchanged too.
  * A ControlNet model is loaded after the hijack (not in self.layers): its convs keep zero padding.
  * Infotext: "Tiling: True" right after the fixed entries ("RNG" and the others before it), before
    p.extra_generation_params (mask blur, hires entries, hashes, ...).

The oracle's UNet and VAE are diffusers modules whose convs have the same padding as LDM's (Downsample2D: padding 1
stride 2 in the UNet, padding 0 after an explicit constant pad in the VAE encoder), so setting padding_mode on every
torch.nn.Conv2d of pipe["unet"] and pipe["vae"] is A1111's behaviour.

apply(R) adds --tiling to reference.build_parser and wraps reference.run: with --tiling, every Conv2d of the
pipeline's UNet and VAE (and of the float64 copy reference.pipe_in makes) is circular for the run and zeros again
after it; the run's params.json and image.png infotext get ", Tiling: True" appended (the oracle writes no extra
generation params for the cases this is used with, so the end of the line is A1111's place). A run without --tiling
is the original function.
"""

import json
import os

import torch

_saved = {}


def _convs(pipe):
    """Every torch.nn.Conv2d of the pipeline's UNet and VAE, and of its cached other-dtype copies."""
    out = []
    for p in [pipe] + [v for k, v in pipe.items() if k.startswith("_as_") and isinstance(v, dict)]:
        for key in ("unet", "vae"):
            out += [m for m in p[key].modules() if type(m) is torch.nn.Conv2d]
    return out


def _set_png_parameters(path, text):
    from PIL import Image, PngImagePlugin
    img = Image.open(path)
    img.load()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    img.save(path, pnginfo=info)


def apply(R=None):
    """Patch the oracle (process-wide). A second call does nothing."""
    if _saved:
        return
    if R is None:
        import reference as R
    _saved.update(R=R, run=R.run, build_parser=R.build_parser, pipe_in=R.pipe_in)
    orig_run, orig_build, orig_pipe_in = R.run, R.build_parser, R.pipe_in
    state = {"tiling": False}

    def build_parser():
        ap = orig_build()
        ap.add_argument("--tiling", action="store_true", help="A1111's Tiling: circular padding in the UNet and VAE convs")
        return ap

    def pipe_in(pipe, dtype):
        p = orig_pipe_in(pipe, dtype)
        mode = "circular" if state["tiling"] else "zeros"
        for m in _convs(pipe):  # a copy made now inherits the mode; one made earlier gets it here
            m.padding_mode = mode
        return p

    def run(a, pipe=None, dtype=torch.float32, save_files=True):
        if not getattr(a, "tiling", False):
            return orig_run(a, pipe, dtype, save_files)
        if pipe is None:
            pipe = R.load_pipeline(a.ckpt, a.tokenizer)
        state["tiling"] = True
        for m in _convs(pipe):
            m.padding_mode = "circular"
        try:
            out = orig_run(a, pipe, dtype, save_files)
        finally:
            state["tiling"] = False
            for m in _convs(pipe):
                m.padding_mode = "zeros"
        if save_files and getattr(a, "out", None):
            path = os.path.join(a.out, "params.json")
            if os.path.exists(path):
                with open(path) as f:
                    params = json.load(f)
                params["infotext"] += ", Tiling: True"
                params["tiling"] = True
                with open(path, "w") as f:
                    json.dump(params, f, indent=2)
                png = os.path.join(a.out, "image.png")
                if os.path.exists(png):
                    _set_png_parameters(png, params["infotext"])
        return out

    R.build_parser, R.run, R.pipe_in = build_parser, run, pipe_in


def remove():
    if not _saved:
        return
    R = _saved["R"]
    R.run, R.build_parser, R.pipe_in = _saved["run"], _saved["build_parser"], _saved["pipe_in"]
    _saved.clear()
