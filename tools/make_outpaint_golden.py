#!/usr/bin/env python3
"""Make the "Outpainting mk2" generation golden(s) in Tests/Fixtures/outpaint/golden/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_outpaint_golden.py --ref PATH/TO/shared/ref --tokenizer MODELS_DIR/clip-tokenizer

A1111 1.10.1's real script (from the checkout named by $A1111_WEBUI, checked against its upstream git blob, run by
tools/outpaint_mk2_harness.py) drives the generation; each of its process_images calls (one per direction
and batch iteration) is one run of the oracle's reference.run (REF/reference.py, like make_goldens.py, with
tools/a1111_unet.py applied) as an img2img inpainting job with exactly the settings the script left on p:

    --width p.width --height p.height --init-image <p.init_images[0]> --mask <p.image_mask> (RGB PNGs)
    --mask-blur-x p.mask_blur_x --mask-blur-y p.mask_blur_y --inpainting-fill 1 (original), whole picture,
    mask_round on, resize mode 0 (the image and the mask already have the processing size)

plus the request's prompt / seed / steps / CFG / sampler / denoising strength. The oracle has no option for
A1111's separate p.latent_mask (the script draws its own, unblurred, with twice the blur margin), so
reference.prepare_inpaint is wrapped while the case runs: it returns the oracle's inpaint.prepare(...) with
"latent_mask" replaced by p.latent_mask, which is what StableDiffusionProcessingImg2Img.init does
(latent_mask = self.latent_mask if self.latent_mask is not None else image_mask; with inpainting_fill 1 that
is its only use). The oracle's output image (decoded, then the overlay of the noised init crop through
clip(2 * blurred mask)) goes back to the script, which pastes it into the noised image and crops.

Layout: golden/<case>/params.json (request, script_args, per step the oracle's params and float32-vs-float64
distances, the result), golden/<case>/out-<i>.png (the script's returned images), golden/<case>/step<k>-<dir>/
(the oracle's files of that process_images call, make_goldens.py's KEEP names less image_float.npy);
golden/index.json (golden_common.update_index). These cases are NOT in Tests/Fixtures/golden/index.json:
GoldenTests runs every case there as a single generation request, which an outpainting job is not.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import outpaint_mk2_harness as H  # noqa: E402
from golden_common import sha256, to_argv, update_index  # noqa: E402

FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
CKPT = os.path.join(FIXTURES, "models", "tiny-sd15.safetensors")
CKPT_SHA256 = "a7caa29fe88432bbcf4de833985faded804ab9f60baf7121ce011b8540e8ff0a"
GOLDEN = os.path.join(FIXTURES, "outpaint", "golden")
INIT_128 = "Tests/Fixtures/images/init-128.png"

KEEP = ("params.json", "tokens.json", "cond.npy", "uncond.npy", "noise.npy", "sigmas.npy",
        "first_unet_in.npy", "first_unet_t.npy", "first_unet_eps.npy", "first_denoised.npy",
        "steps.npy", "sampler_noise.npy", "latents.npy", "image.png", "init_latent.npy", "init_image.png",
        "latent_nmask.npy", "init_latent_encoded.npy", "latents_unblended.npy",
        "inpaint_image_mask.png", "inpaint_mask_for_overlay.png", "inpaint_overlay.png", "image_decoded.png")


def cases():
    """init = a crop of init-128.png (box); request = the img2img request; script_args as the API passes them."""
    return {
        # left then up, pixels 16 -> left 64 (target width ceil(80/64)*64 = 128), up 16 (target height 64);
        # both steps generate 128x64 (the left step's image is 64 high: the 48-row init on black padding, rows
        # 49..63 repainted too); p.mask_blur_x = p.mask_blur_y = 16 (kernel 81); Euler a, 3 steps, strength 0.8
        "outpaint-mk2-left-up-euler_a": dict(
            init=dict(image=INIT_128, crop_box=[32, 40, 96, 88]),
            request=dict(prompt="a photo of a cat, sunny meadow", negative="blurry", seed=42, steps=3, cfg=7,
                         sampler="Euler a", scheduler="Automatic", width=128, height=128, denoising_strength=0.8,
                         batch_size=1, n_iter=1),
            script_args=["", 16, 4, ["left", "up"], 1.0, 0.05]),
    }


class OracleProcessImages:
    """process_images(p) -> one reference.run per call; keeps every call's files."""
    def __init__(self, R, pipe, tokenizer, request, tmp, threads):
        self.R, self.pipe, self.tok, self.req, self.tmp, self.threads = R, pipe, tokenizer, request, tmp, threads
        self.calls = []

    @contextlib.contextmanager
    def latent_mask(self, latent_mask):
        R = self.R
        orig = R.prepare_inpaint

        def prepare_with_latent_mask(a):
            inp = orig(a)
            assert inp["image_mask"] is not None and latent_mask.size == (a.width, a.height)
            inp["latent_mask"] = latent_mask
            return inp
        R.prepare_inpaint = prepare_with_latent_mask
        try:
            yield
        finally:
            R.prepare_inpaint = orig

    def __call__(self, p):
        from PIL import Image
        k = len(self.calls)
        f = sys._getframe(0)
        while f is not None and f.f_code.co_name != "expand":
            f = f.f_back
        L = f.f_locals
        direction = [d for d, flag in (("left", L["is_left"]), ("right", L["is_right"]), ("up", L["is_top"]),
                                       ("down", L["is_bottom"])) if flag][0]
        if len(p.init_images) != 1:
            sys.exit("batch_size > 1 is not modelled by the oracle")
        d = os.path.join(self.tmp, f"step{k}-{direction}")
        os.makedirs(d)
        init_path, mask_path = os.path.join(self.tmp, f"_init{k}.png"), os.path.join(self.tmp, f"_mask{k}.png")
        p.init_images[0].save(init_path)
        p.image_mask.save(mask_path)
        rq = self.req
        opts = dict(prompt=rq["prompt"], negative=rq["negative"], seed=rq["seed"], steps=rq["steps"], cfg=rq["cfg"],
                    sampler=rq["sampler"], scheduler=rq["scheduler"], width=p.width, height=p.height,
                    init_image=init_path, mask=mask_path, denoising_strength=rq["denoising_strength"],
                    mask_blur_x=p.mask_blur_x, mask_blur_y=p.mask_blur_y, inpainting_fill=p.inpainting_fill,
                    inpaint_full_res=bool(p.inpaint_full_res))
        argv = to_argv(opts, CKPT, self.tok, d, self.threads, ())
        a = self.R.build_parser().parse_args(argv)
        t0 = time.time()
        with self.latent_mask(p.latent_mask.copy()):
            res = self.R.run(a, self.pipe)
            floor = self.R.float64_floor(a, self.pipe, res)
        self.pipe.pop("_as_torch.float64", None)
        with open(os.path.join(d, "params.json")) as fh:
            params = json.load(fh)
        img = Image.open(os.path.join(d, "image.png")).convert("RGB")
        img.load()
        self.calls.append(dict(dir=d, direction=direction, params=params, floor=floor, seconds=time.time() - t0,
                               oracle_args={k2: (os.path.basename(v) if k2 in ("init_image", "mask") else v)
                                            for k2, v in opts.items()},
                               latent_mask=p.latent_mask.copy(), crop_region=list(L["crop_region"])))
        return H.Processed(p, [img], seed=rq["seed"], info=params["infotext"])


def make(args):
    sys.path.insert(0, os.path.abspath(args.ref))
    import reference as R
    import a1111_unet
    a1111_unet.apply()
    from PIL import Image
    got = sha256(CKPT)
    if got != CKPT_SHA256:
        sys.exit(f"checkpoint sha256 {got} != expected {CKPT_SHA256}")
    mod = H.load()
    pipe = R.load_pipeline(CKPT, args.tokenizer)
    os.makedirs(GOLDEN, exist_ok=True)
    entries = {}
    for name, c in cases().items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        rq = c["request"]
        init = Image.open(os.path.join(REPO, c["init"]["image"])).convert("RGB").crop(tuple(c["init"]["crop_box"]))
        with tempfile.TemporaryDirectory() as tmp:
            hook = OracleProcessImages(R, pipe, args.tokenizer, rq, tmp, args.threads)
            H.HOOK["process_images"] = hook
            try:
                p = H.P(init, rq["width"], rq["height"], batch_size=rq["batch_size"], n_iter=rq["n_iter"],
                        prompt=rq["prompt"], seed=rq["seed"])
                res = mod.Script().run(p, *c["script_args"])
            finally:
                H.HOOK["process_images"] = None
            dest = os.path.join(GOLDEN, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.makedirs(dest)
            init.save(os.path.join(dest, "init.png"))
            steps = []
            for k, call in enumerate(hook.calls):
                sub = os.path.basename(call["dir"])
                os.makedirs(os.path.join(dest, sub))
                for fn in KEEP:
                    src = os.path.join(call["dir"], fn)
                    if os.path.exists(src):
                        shutil.copyfile(src, os.path.join(dest, sub, fn))
                call["latent_mask"].save(os.path.join(dest, sub, "latent_mask.png"))
                shutil.copyfile(os.path.join(tmp, f"_init{k}.png"), os.path.join(dest, sub, "script_init.png"))
                shutil.copyfile(os.path.join(tmp, f"_mask{k}.png"), os.path.join(dest, sub, "script_image_mask.png"))
                pr = call["params"]
                steps.append(dict(folder=sub, direction=call["direction"], oracle_args=call["oracle_args"],
                                  crop_region=call["crop_region"], width=pr["width"], height=pr["height"],
                                  t_enc=pr.get("t_enc"), unet_calls=pr["unet_calls"], infotext=pr["infotext"],
                                  float32_vs_float64=call["floor"],
                                  files=sorted(os.listdir(os.path.join(dest, sub)))))
            outs = []
            for i, im in enumerate(res.images):
                fn = f"out-{i}.png"
                im.save(os.path.join(dest, fn))
                outs.append({"file": fn, "size": list(im.size), "sha256": sha256(os.path.join(dest, fn))})
        params = {
            "golden_case": name, "kind": "outpainting_mk2",
            "script": H.UPSTREAM, "checkpoint": "Tests/Fixtures/models/tiny-sd15.safetensors",
            "checkpoint_sha256": CKPT_SHA256, "init": dict(c["init"], file="init.png", size=list(init.size)),
            "request": rq, "script_args": c["script_args"],
            "doc": "script_args = [info, pixels, mask_blur, direction, noise_q, color_variation]; request width/height "
                   "only cap the processed crop (process_width / process_height); every step uses the request's "
                   "seed; step folders hold the oracle's files of that process_images call (script_init.png = "
                   "p.init_images[0], script_image_mask.png = p.image_mask, latent_mask.png = p.latent_mask)",
            "steps": steps,
            "result": {"images": outs, "seed": res.seed, "info": res.info,
                       "info_note": "A1111 returns the first process_images call's infotext for the whole job "
                                    "(the oracle's approximate A1111 infotext; Size is the first step's)"},
            "threads": args.threads,
        }
        with open(os.path.join(dest, "params.json"), "w") as f:
            json.dump(params, f, indent=2)
        entries[name] = {"kind": "outpainting_mk2", "request": rq, "script_args": c["script_args"],
                         "init": params["init"], "steps": [{k: s[k] for k in ("folder", "direction", "width", "height",
                                                                               "t_enc", "unet_calls")} for s in steps],
                         "result": outs, "files": sorted(os.listdir(dest))}
        print(f"{name}: {len(steps)} process_images calls, {time.time() - t0:.1f}s -> {dest}", flush=True)
    update_index(os.path.join(GOLDEN, "index.json"), entries)
    with open(os.path.join(GOLDEN, "index.json")) as f:
        doc = json.load(f)
    doc["meta"] = {"checkpoint": "Tests/Fixtures/models/tiny-sd15.safetensors", "checkpoint_sha256": CKPT_SHA256,
                   "made_by": "tools/make_outpaint_golden.py (A1111's script + oracle reference.py, float64 twin)",
                   "threads": args.threads}
    with open(os.path.join(GOLDEN, "index.json"), "w") as f:
        json.dump(doc, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref)")
    ap.add_argument("--tokenizer", required=True, help="clip-tokenizer dir made by REF/vocab.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None)
    make(ap.parse_args())


if __name__ == "__main__":
    main()
