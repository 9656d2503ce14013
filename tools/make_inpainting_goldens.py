#!/usr/bin/env python3
"""Goldens for an SD 1.x *inpainting checkpoint* (9-channel UNet, conditioning_key "hybrid") as
AUTOMATIC1111 1.10 runs it, from the PyTorch oracle (REF/reference.py) plus the image
conditioning this script adds around it. The oracle's diffusers UNet gets A1111's rule for sizes that
are not multiples of 64 (tools/a1111_unet.py; no case here needs it: all are 128x128).

    REF_VENV/bin/python tools/make_inpainting_goldens.py --ref REF --tokenizer MODELS_DIR/clip-tokenizer \
        [--only CASE ...] [--threads 2]

Checkpoint: Tests/Fixtures/models/tiny-sd15-inpainting.safetensors (tools/make_inpainting_model.py;
the script refuses another sha256). Writes Tests/Fixtures/golden/<case>/ with the files and
params.json conventions of tools/make_goldens.py (same KEEP list, image_float.npy dropped) plus
image_cond.npy, and adds / replaces its cases in Tests/Fixtures/golden/index.json under an
exclusive fcntl.flock on that file, leaving every other entry (and the meta block) as it is.
Args: the make_goldens.py keys plus "ckpt" (the checkpoint, relative to the repository root);
index.json entries also carry "checkpoint" and "checkpoint_sha256".

What A1111 1.10 does with a hybrid checkpoint (modules/processing.py, sd_samplers_cfg_denoiser.py,
ldm DiffusionWrapper), and what InpaintingModelConditioning adds to the oracle:

  img2img (StableDiffusionProcessingImg2Img.init -> img2img_image_conditioning(image * 2 - 1,
  init_latent, image_mask, mask_round) -> inpainting_image_conditioning):
    image      the VAE input as the oracle prepares it (flattened, resized / cropped, masked content
               filled: reference.prepare_inpaint()["image"], or reference.load_init_image without a
               mask), uint8 / 255 in float32, source = image * 2 - 1, [1, 3, H, W], a contiguous
               NCHW tensor as A1111's batch (the oracle's encode_image passes a channels-last-strided
               view; with the all-zero image of plain img2img that layout moves the float32 encoding
               of this tiny random VAE 12% away from its float64 value: GroupNorm over a spatially
               constant map amplifies rounding)
    mask       image_mask = the processing mask (after binarise / invert / blur, resized to W x H or
               cropped + resize-and-fill for "only masked"): np.array(mask.convert("L")) / 255 as
               [1, 1, H, W], torch.round when mask_round (the default); no mask (plain img2img):
               source.new_ones(1, 1, H, W)
    masked     torch.lerp(source, source * (1 - mask), inpainting_mask_weight = 1.0), which at weight
               1.0 is exactly source * (1 - mask) (grey, 0, where mask = 1); for plain img2img all
               zeros: the whole picture counts as masked
    encoded    scale_factor * VAE posterior MEAN of it. A1111 calls get_first_stage_encoding, i.e.
               draws a posterior sample with the global torch RNG (not reproducible); the oracle
               uses the mean for the init latent too (its --encode-mode mean), and so does this
    cmask      torch.nn.functional.interpolate(mask, size=(H/8, W/8)), default mode "nearest"
               (latent pixel (i, j) = mask pixel (8i, 8j) for 8x downsampling)
    image_cond torch.cat([cmask, encoded], dim=1): [1, 5, H/8, W/8]
  txt2img (txt2img_image_conditioning): torch.ones(1, 3, H, W) * 0.5 through images_tensor_to_samples
    (* 2 - 1 = 0: a grey image), encoded as above, padded with a leading all-ones mask channel:
    [1, 5, H/8, W/8] = img2img without a mask at weight 1.0, exactly.
  UNet: every UNet call gets torch.cat([x_in, image_cond], dim=1) (9 channels), image_cond repeated
    for every row of the batch, cond and uncond rows alike (CFGDenoiser: image_uncond = image_cond;
    DiffusionWrapper "hybrid": xc = cat([x] + c_concat, 1)); x_in is c_in * x for the k-diffusion
    samplers (CompVisDenoiser) and x itself for DDIM / PLMS (CompVisTimestepsDenoiser). The oracle's
    first_unet_in.npy stays the 4-channel x_in (before the concat).
  Everything else as for the 4-channel model: the latent mask (bicubic, rounded) blend of the CFG
    output (k-diffusion) or of x before every UNet call (DDIM / PLMS), masked content (fill / latent
    noise / latent nothing), the final latent blend and the overlay all apply to inpainting models too
    (CFGDenoiser.mask / StableDiffusionProcessingImg2Img.sample, no model check).
  Infotext: create_infotext adds "Conditional mask weight: 1.0" whenever
    p.is_using_inpainting_conditioning (set by both conditioning functions), placed after "Denoising
    strength" (txt2img: after the seed / size / model fields) and before "Clip skip" and the
    extra_generation_params (Mask blur, Inpaint area, Masked content, ...): the oracle's infotext() is
    patched to put it first among its inpainting fields, so params.json "infotext" and image.png's
    "parameters" chunk both have it.

Per case: image_cond.npy ([1, 5, h, w] float32, the float32 run's), and params.json
"inpainting_model" (how image_cond was made, its shape, and zeroed_image_cond_latents_rel_l2: the
same float32 run with image_cond all zeros, relative L2 of the final latents against the golden's,
which must be > 1e-3 or the script fails).
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256, to_argv, update_index  # noqa: E402 (tools/ is the script's own folder)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
CKPT_REL = "Tests/Fixtures/models/tiny-sd15-inpainting.safetensors"
CKPT_SHA256 = "0044400555ab8a9f4368eb1e1edc0d7c94fe95e78c2ad4f682cfb8453228828b"
INPAINTING_MASK_WEIGHT = 1.0  # A1111 opts.inpainting_mask_weight default

KEEP = ("params.json", "tokens.json", "cond.npy", "uncond.npy", "noise.npy", "sigmas.npy",
        "timesteps.npy", "ddim_alphas.npy", "ddim_alphas_prev.npy",
        "first_unet_in.npy", "first_unet_t.npy", "first_unet_eps.npy", "first_denoised.npy",
        "steps.npy", "sampler_noise.npy", "latents.npy", "image.png",
        "init_latent.npy", "init_image.png",
        "latent_nmask.npy", "init_latent_encoded.npy", "latents_unblended.npy",
        "inpaint_image_mask.png", "inpaint_mask_for_overlay.png", "inpaint_overlay.png", "image_decoded.png",
        "image_cond.npy")  # image_float.npy dropped (size)

# the usual prompt of make_goldens.py (its BASE)
PROMPT = "a photo of a (cat:1.2), [blurry] masterpiece, \\(escaped\\)"
NEGATIVE = "lowres, bad anatomy"
INIT_IMAGE = "Tests/Fixtures/images/init-128.png"
MASK = "Tests/Fixtures/images/mask-128.png"
PATH_ARGS = ("init_image", "mask")


def cases():
    """128 px, 10 steps, seeds 800-804, the committed init / mask images, the inpainting checkpoint."""
    base = dict(prompt=PROMPT, negative=NEGATIVE, steps=10, cfg=7, width=128, height=128, scheduler="Automatic",
                ckpt=CKPT_REL)
    inp = dict(init_image=INIT_IMAGE, mask=MASK, mask_blur=4, inpainting_fill=1, inpaint_full_res=False,
               inpaint_full_res_padding=32, inpainting_mask_invert=False)
    out = {}
    # whole picture, masked content original, blur 4
    out["inpmodel-inpaint-euler"] = dict(base, sampler="Euler", seed=800, denoising_strength=0.75, **inp)
    # only masked, padding 32, masked content fill: image_cond from the cropped, filled image and the cropped mask
    out["inpmodel-inpaint-onlymasked-dpmpp_2m"] = dict(base, sampler="DPM++ 2M", seed=801, denoising_strength=0.75,
                                                      **dict(inp, inpainting_fill=0, inpaint_full_res=True))
    # DDIM (x blended before every UNet call), masked content latent noise; t_enc int(0.9 * 10) = 9
    out["inpmodel-inpaint-ddim"] = dict(base, sampler="DDIM", seed=802, denoising_strength=0.9,
                                        **dict(inp, inpainting_fill=2))
    # txt2img: image_cond = [ones, encode(grey)]
    out["inpmodel-txt2img-euler_a"] = dict(base, sampler="Euler a", seed=803)
    # img2img without a mask: mask = ones, masked image = zeros (= grey): the same image_cond as txt2img
    out["inpmodel-img2img-euler"] = dict(base, sampler="Euler", seed=804, denoising_strength=0.6,
                                         init_image=INIT_IMAGE)
    return out


class InpaintingModelConditioning:
    """A1111 1.10's c_concat for a hybrid (9-channel) checkpoint, added around reference.run (see the
    module docstring). While patched(): reference.prepare_inpaint / load_init_image are wrapped to
    remember the VAE input image and the processing mask of the current run; reference.EpsUNet is
    subclassed so that, when the run builds it (after the init image, before sampling), it computes
    image_cond in the run's dtype (its own VAE copy, so the float64 twin gets a float64 image_cond)
    and hands the UNet torch.cat([x_in, image_cond], 1) on every call; reference.infotext gets
    "Conditional mask weight" first among the inpainting fields."""

    def __init__(self, R, pipe, opts):
        self.R, self.pipe, self.opts = R, pipe, opts
        self.captured = None
        self.zero = False
        self.image_conds = []  # one per run, in run order (float32 first)
        self.kind = None

    def make_image_cond(self, dtype):
        import numpy as np
        import torch
        F = torch.nn.functional
        R = self.R
        P = R.pipe_in(self.pipe, dtype)
        vae, sf = P["vae"], P["cfg"]["scale_factor"]
        H, W = self.opts["height"], self.opts["width"]
        cap, self.captured = self.captured, None
        with torch.no_grad():
            if cap is None:  # txt2img_image_conditioning
                self.kind = "txt2img: ones(1, 3, H, W) * 0.5 -> * 2 - 1 (= 0) -> encode; mask channel all ones"
                image = torch.ones(1, 3, H, W, dtype=dtype) * 0.5
                encoded = sf * vae.encode(image * 2 - 1).latent_dist.mean
                ic = F.pad(encoded, (0, 0, 0, 0, 1, 0), value=1.0)
            else:  # inpainting_image_conditioning(image * 2 - 1, init_latent, image_mask, mask_round)
                arr = np.array(cap["image"]).astype(np.float32) / 255.0
                # contiguous NCHW, as A1111's batch tensor (np.expand_dims(...).repeat(...) copies); the
                # oracle's encode_image feeds the VAE a channels-last-strided view, which for the all-zero
                # masked image of plain img2img moves the float32 encoding 12% off its float64 value
                source = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 2, 0)))[None].to(dtype) * 2 - 1
                if cap.get("image_mask") is not None:
                    self.kind = ("img2img with mask: lerp(source, source * (1 - mask), 1.0), mask = processing mask "
                                 "L / 255" + (", rounded" if cap["mask_round"] else ", not rounded"))
                    m = np.array(cap["image_mask"].convert("L")).astype(np.float32) / 255.0
                    mask = torch.from_numpy(m[None, None])
                    if cap["mask_round"]:
                        mask = torch.round(mask)
                else:
                    self.kind = "img2img without mask: mask = ones, lerp(source, source * 0, 1.0) = 0 (grey)"
                    mask = source.new_ones(1, 1, *source.shape[-2:])
                mask = mask.to(dtype)
                masked = torch.lerp(source, source * (1.0 - mask), INPAINTING_MASK_WEIGHT)
                encoded = sf * vae.encode(masked).latent_dist.mean
                mask = F.interpolate(mask, size=(H // 8, W // 8))  # default mode: nearest
                mask = mask.expand(encoded.shape[0], -1, -1, -1)
                ic = torch.cat([mask, encoded], dim=1)
            if cap is not None and cap.get("image_mask") is None:  # must be txt2img's image_cond exactly
                grey = sf * vae.encode(torch.ones(1, 3, H, W, dtype=dtype) * 0.5 * 2 - 1).latent_dist.mean
                if not torch.equal(ic, F.pad(grey, (0, 0, 0, 0, 1, 0), value=1.0)):
                    raise SystemExit("img2img without a mask: image_cond differs from txt2img's")
        if self.zero:
            ic = torch.zeros_like(ic)
        self.image_conds.append(ic)
        return ic

    @contextlib.contextmanager
    def patched(self):
        R, me = self.R, self
        saved = (R.prepare_inpaint, R.load_init_image, R.EpsUNet, R.infotext)
        prepare0, load0, eps0, info0 = saved

        def prepare_inpaint(a):
            inp = prepare0(a)
            me.captured = {"image": inp["image"], "image_mask": inp["image_mask"], "mask_round": not a.no_mask_round}
            return inp

        def load_init_image(path, width, height):
            img = load0(path, width, height)
            me.captured = {"image": img, "image_mask": None}
            return img

        class ConcatUNet:
            def __init__(self, unet, ic):
                self.unet, self.ic = unet, ic

            def __call__(self, x, t, **kw):
                import torch
                ic = self.ic.to(x.dtype).expand(x.shape[0], -1, -1, -1)
                return self.unet(torch.cat([x, ic], dim=1), t, **kw)

        class EpsUNetWithImageCond(eps0):
            def __init__(self, unet, rec):
                super().__init__(unet, rec)
                if unet.config.in_channels != 9:
                    raise SystemExit(f"the checkpoint's UNet has {unet.config.in_channels} input channels, not 9")
                dtype = next(unet.parameters()).dtype
                self.unet = ConcatUNet(unet, me.make_image_cond(dtype))

        def infotext(a, sampler_label, scheduler_label, model_hash, model_name, img2img, inpaint_info=None):
            fields = {"Conditional mask weight": INPAINTING_MASK_WEIGHT, **(inpaint_info or {})}
            return info0(a, sampler_label, scheduler_label, model_hash, model_name, img2img, fields)

        R.prepare_inpaint, R.load_init_image, R.EpsUNet, R.infotext = prepare_inpaint, load_init_image, \
            EpsUNetWithImageCond, infotext
        try:
            yield
        finally:
            R.prepare_inpaint, R.load_init_image, R.EpsUNet, R.infotext = saved


def make(args):
    sys.path.insert(0, os.path.abspath(args.ref))
    import numpy as np
    import torch
    import reference as R
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import a1111_unet  # A1111's UNet rule for sizes not multiples of 64 (tools/a1111_unet.py), before any UNet runs
    a1111_unet.apply()

    ckpt = os.path.join(REPO, CKPT_REL)
    got = sha256(ckpt)
    if got != CKPT_SHA256:
        sys.exit(f"{CKPT_REL}: sha256 {got} != expected {CKPT_SHA256} (rebuild it with tools/make_inpainting_model.py)")
    golden = os.path.join(FIXTURES, "golden")
    os.makedirs(golden, exist_ok=True)
    pipe = R.load_pipeline(ckpt, args.tokenizer)
    if pipe["unet"].config.in_channels != 9:
        sys.exit("not a 9-channel UNet")
    every = cases()
    if args.only:
        unknown = sorted(set(args.only) - set(every))
        if unknown:
            sys.exit(f"unknown case(s): {' '.join(unknown)}")
    entries = {}
    for name, opts in every.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            argv = to_argv(opts, ckpt, args.tokenizer, tmp, args.threads, PATH_ARGS)
            a = R.build_parser().parse_args(argv)
            ext = InpaintingModelConditioning(R, pipe, opts)
            with ext.patched():
                res = R.run(a, pipe)
                ic32 = ext.image_conds[0]
                kind = ext.kind
                np.save(os.path.join(tmp, "image_cond.npy"), ic32.numpy().astype(np.float32))
                floor = R.float64_floor(a, pipe, res)
                ic64 = ext.image_conds[1]
                ext.zero = True  # the same float32 run with image_cond all zeros: must differ
                zeroed = R.run(a, pipe, save_files=False)
            pipe.pop("_as_torch.float64", None)
            zero_rel = R.rel_l2(zeroed["latents"], res["latents"])
            if not zero_rel > 1e-3:
                sys.exit(f"{name}: zeroing image_cond moves the latents by only {zero_rel:.2e}")
            dest = os.path.join(golden, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.makedirs(dest)
            for fn in KEEP:
                if os.path.exists(os.path.join(tmp, fn)):
                    shutil.copyfile(os.path.join(tmp, fn), os.path.join(dest, fn))
        with open(os.path.join(dest, "params.json")) as f:
            params = json.load(f)
        floor["image_cond_rel_l2"] = R.rel_l2(ic32, ic64)
        floor["image_cond_max_abs"] = float((ic32.double() - ic64.double()).abs().max())
        params["float32_vs_float64"] = floor
        params["inpainting_model"] = {
            "conditioning_key": "hybrid", "unet_in_channels": 9,
            "inpainting_mask_weight": INPAINTING_MASK_WEIGHT,
            "image_cond": kind, "image_cond_shape": list(ic32.shape),
            "image_cond_encode": "scale_factor * VAE posterior mean (A1111 draws a posterior sample)",
            "conditioning_mask_resize": "torch.nn.functional.interpolate, mode nearest (default)",
            "unet_input": "cat([x_in, image_cond], dim=1) on every row (cond and uncond); first_unet_in.npy is x_in",
            "zeroed_image_cond_latents_rel_l2": zero_rel,
        }
        params["golden_case"] = name
        params["golden_args"] = opts
        with open(os.path.join(dest, "params.json"), "w") as f:
            json.dump(params, f, indent=2)
        with open(os.path.join(dest, "tokens.json")) as f:
            toks = json.load(f)
        entry = {"args": opts, "checkpoint": CKPT_REL, "checkpoint_sha256": CKPT_SHA256,
                 "sampler": params["sampler"], "scheduler": params["scheduler"], "unet_calls": params["unet_calls"],
                 "cond_chunks": len(toks["cond"]["chunks"]), "uncond_chunks": len(toks["uncond"]["chunks"]),
                 "files": sorted(os.listdir(dest)), "float32_vs_float64": floor}
        if params.get("t_enc") is not None:
            entry["t_enc"] = params["t_enc"]
        entries[name] = entry
        print(f"{name:38} {params['sampler']:9} {params['unet_calls']:3} UNet calls {time.time() - t0:5.1f}s  "
              f"f32-vs-f64 latents rel L2 {floor['latents_rel_l2']:.2e}  image_cond zeroed: latents moved "
              f"{zero_rel:.2e}", flush=True)
    update_index(os.path.join(golden, "index.json"), entries)
    print(f"index.json: {len(entries)} case(s) added / replaced")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: reference.py, ...)")
    ap.add_argument("--tokenizer", required=True, help="clip-tokenizer dir made by REF/vocab.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    make(ap.parse_args())


if __name__ == "__main__":
    main()
