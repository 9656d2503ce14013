#!/usr/bin/env python3
"""Goldens for SD 2.x checkpoints (512-base eps and 768-v v-prediction) as AUTOMATIC1111 1.10 generates with them,
from the PyTorch oracle (REF/reference.py) with the SD 2 parts this script swaps in.

    REF_VENV/bin/python tools/make_sd2_goldens.py --ref REF --tokenizer MODELS_DIR/clip-tokenizer \
        [--only CASE ...] [--threads 2] [--kdiff KDIFF_DIR/unpacked] [--no-crosscheck]

Checkpoints: Tests/Fixtures/models/tiny-sd2.safetensors (eps) and tiny-sd2-v.safetensors (v), made by
tools/make_sd2_checkpoint.py (the script refuses other sha256s). Writes Tests/Fixtures/golden/<case>/ with the files
and params.json conventions of tools/make_goldens.py (its KEEP list; image_float.npy dropped) and adds / replaces
its cases in Tests/Fixtures/golden/index.json under an exclusive fcntl.flock on that file, leaving every other entry
(and "meta") as it is. Args: the make_goldens.py keys plus "ckpt" (the checkpoint, relative to the repository root);
index.json entries also carry "checkpoint", "checkpoint_sha256" and "parameterization".

What differs from SD 1 in A1111 1.10, and what SD2Semantics swaps into reference.run (everything else -- prompt
parsing and 75-token chunking with comma backtracking, CPU noise, schedules, samplers, CFG, img2img encode
(posterior mean), VAE decode, infotext -- is the oracle's, unchanged):

  tokenizer   modules/sd_hijack_open_clip.py FrozenOpenCLIPEmbedderWithCustomWords.tokenize: open_clip's
              SimpleTokenizer (open_clip.tokenizer._tokenizer.encode) per emphasis fragment; id_start 49406,
              id_end 49407, comma ',</w>' 267. Here: that tokenizer from the open-clip-torch wheel, checked against
              the transformers CLIPTokenizer in --tokenizer on every fragment of every case (same ids).
  chunks      sd_hijack_clip.py TextConditionalModel.tokenize_line (unchanged from SD 1: the oracle's prompt_chunks):
              [BOS] + 75 tokens + [EOS], padded with id_end; tokens.json "chunks" / "multipliers" are these.
  padding     TextConditionalModel.process_tokens: `if self.id_end != self.id_pad` (SD 2: id_pad = 0): for each
              chunk, index = tokens.index(id_end) (the FIRST end token), tokens[index+1:] = 0 ("!"). Only the ids
              fed to the text tower change; emphasis uses the original multipliers. tokens.json gets
              "encoder_input_ids" per side: the ids the tower saw.
  text tower  encode_with_transformers -> ldm FrozenOpenCLIPEmbedder.encode_with_transformer (stablediffusion
              ldm/modules/encoders/modules.py): token_embedding + positional_embedding, resblocks with the causal
              attn_mask up to but not including the last (layer "penultimate", layer_idx 1, from the yaml), ln_final.
              No text_projection. The CLIP-skip setting is ignored (sd_hijack_open_clip.encode_with_transformers
              only has a comment "set self.wrapped.layer_idx here according to opts.CLIP_stop_at_last_layers").
  emphasis    sd_emphasis.EmphasisOriginal (default "Original"): z *= multipliers; z *= mean_before / mean_after,
              per chunk, means over the whole [1, 77, C] chunk including the 0-padded positions.
  denoiser    v: sd_samplers_kdiffusion.KDiffusionSampler uses k_diffusion.external.CompVisVDenoiser when
              sd_model.parameterization == "v": sigma_data 1, c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1),
              c_in = 1/sqrt(s^2+1), denoised = unet(x*c_in, t(s)) * c_out + x * c_skip, t(s) the same log-sigma
              interpolation as CompVisDenoiser. DDIM / PLMS (sd_samplers_timesteps.CompVisTimestepsVDenoiser):
              eps = sqrt_alphas_cumprod[t] * v + sqrt_one_minus_alphas_cumprod[t] * x with the checkpoint's float32
              buffers, t the integer timestep; CFG then on eps as for SD 1. eps checkpoints: the oracle's
              CompVisDenoiser / CompVisTimestepsDenoiser, unchanged. first_unet_eps.npy is the raw UNet output
              (v for a v checkpoint).
  UNet        diffusers UNet2DConditionModel with attention_head_dim = heads per level (channels // 16) and
              use_linear_projection (make_sd2_checkpoint.py checks it against ldm's own UNetModel: rel L2 ~1e-6).
Not modelled for SD 2: textual inversion / LoRA (the oracle's are SD 1-shaped), inpainting / depth / unCLIP SD 2
variants, fp16 (with half precision A1111 also halves sqrt_alphas_cumprod; the oracle is float32 / --no-half).

Sizes: 96 px is a multiple of 8 but not 64: the UNet's third downsampling gives 2 from 3. Like every golden script,
this one patches A1111's rule into the oracle's diffusers UNet (tools/a1111_unet.py: upsample x2, conv, then
nearest-resize to the skip at the concatenation, modules/sd_hijack_unet.py), not diffusers' own (upsample straight to
the skip's size); see params.json "sd2"."size_note".

Cross-checks (unless --no-crosscheck): cond / uncond recomputed through transformers' CLIPTextModel converted by
diffusers' convert_open_clip_checkpoint (hidden_states[-2] + final_layer_norm) from the tokens.json ids; Euler
(eps / v) through diffusers' StableDiffusionPipeline with EulerDiscreteScheduler(prediction_type epsilon /
v_prediction) given our sigmas and conditioning; DDIM (v) through DDIMScheduler(prediction_type="v_prediction").step
over A1111's timesteps; with --kdiff, every k-diffusion case through k-diffusion 0.1.1.post1's own CompVisDenoiser /
CompVisVDenoiser and sample_* (REF/crosscheck.py's driver). Results go to params.json "sd2"."crosscheck".
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256, to_argv, update_index  # noqa: E402 (tools/ is the script's own folder)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CKPTS = {  # parameterization -> (repo-relative path, sha256 of tools/make_sd2_checkpoint.py's output, torch 2.15)
    "eps": ("Tests/Fixtures/models/tiny-sd2.safetensors",
            "ce601807694be44ce7894dc00ef5f1c9a5e1959575182bcb1a7782f2f94270ce"),
    "v": ("Tests/Fixtures/models/tiny-sd2-v.safetensors",
          "0f19c98ea28bae04d7812f9cf931365a17e033b89d2a9ee5903b870ac2063ec5"),
}

KEEP = ("params.json", "tokens.json", "cond.npy", "uncond.npy", "noise.npy", "sigmas.npy",
        "timesteps.npy", "ddim_alphas.npy", "ddim_alphas_prev.npy",
        "first_unet_in.npy", "first_unet_t.npy", "first_unet_eps.npy", "first_denoised.npy",
        "steps.npy", "sampler_noise.npy", "latents.npy", "image.png",
        "init_latent.npy", "init_image.png")  # image_float.npy dropped (size)

# the usual prompt of make_goldens.py (its BASE): emphasis (1.2, 1/1.1) and an escape
PROMPT = "a photo of a (cat:1.2), [blurry] masterpiece, \\(escaped\\)"
NEGATIVE = "lowres, bad anatomy"
INIT_IMAGE = "Tests/Fixtures/images/init-128.png"
PATH_ARGS = ("init_image", "lora_dir")
LORA_DIR = "Tests/Fixtures/networks/Lora-sd2"  # tools/make_sd2_lora.py


def cases():
    """10 steps, cfg 7, 128 px (sd2-dpmpp_2m 96x128), seeds 900-906."""
    eps, v = CKPTS["eps"][0], CKPTS["v"][0]
    base = dict(prompt=PROMPT, negative=NEGATIVE, steps=10, cfg=7, width=128, height=128, scheduler="Automatic")
    out = {}
    out["sd2-euler"] = dict(base, sampler="Euler", seed=900, ckpt=eps)
    out["sd2-dpmpp_2m"] = dict(base, sampler="DPM++ 2M", seed=901, width=96, height=128, ckpt=eps)
    out["sd2v-euler"] = dict(base, sampler="Euler", seed=902, ckpt=v)
    out["sd2v-euler_a"] = dict(base, sampler="Euler a", seed=903, ckpt=v)
    out["sd2v-ddim"] = dict(base, sampler="DDIM", seed=904, ckpt=v)
    out["sd2v-i2i-euler"] = dict(base, sampler="Euler", seed=905, ckpt=v, init_image=INIT_IMAGE, denoising_strength=0.6)
    # A1111 ignores the CLIP-skip setting for SD 2 (the conditioning equals sd2-euler's bit for bit; the script checks
    # it) but still writes "Clip skip: 2" into the infotext
    out["sd2-clipskip2-euler_a"] = dict(base, sampler="Euler a", seed=906, clip_skip=2, ckpt=eps)
    # kohya LoRA on SD 2 (te 0.8, unet 0.5): OpenCLIP text-encoder keys and the all-four rule of A1111's
    # MultiheadAttention patch (see apply_networks_sd2)
    out["sd2-lora-euler_a"] = dict(base, prompt=PROMPT + " <lora:tiny_sd2_lora:0.8:0.5>", sampler="Euler a", seed=907,
                                   lora_dir=LORA_DIR, ckpt=eps)
    return out


# ---------------------------------------------------------------------------- SD 2 pieces

class OpenCLIPTokenizer:
    """A1111's SD 2 tokenizer (sd_hijack_open_clip: open_clip.tokenizer._tokenizer) behind the small interface the
    oracle's prompt_chunks uses (bos/eos ids, get_vocab, __call__ -> input_ids without special tokens)."""

    def __init__(self, check_against=None):
        import open_clip.tokenizer as T
        self.t = T._tokenizer
        self.bos_token_id = self.t.encoder["<start_of_text>"]
        self.eos_token_id = self.t.encoder["<end_of_text>"]
        self.check_against = check_against  # transformers CLIPTokenizer: every fragment must give the same ids
        self.checked = 0

    def get_vocab(self):
        return self.t.encoder

    def __call__(self, texts, truncation=False, add_special_tokens=False):
        ids = [self.t.encode(x) for x in texts]
        if self.check_against is not None:
            other = self.check_against(list(texts), truncation=False, add_special_tokens=False)["input_ids"]
            if other != ids:
                raise SystemExit(f"open_clip and transformers tokenizers differ on {texts!r}: {ids} vs {other}")
            self.checked += len(texts)
        return {"input_ids": ids}


def encoder_input_ids(ids, eos, pad):
    """TextConditionalModel.process_tokens for id_end != id_pad: everything after the first id_end becomes id_pad."""
    ids = list(ids)
    if eos != pad:
        index = ids.index(eos)
        ids[index + 1:] = [pad] * (len(ids) - index - 1)
    return ids


def load_pipeline(R, SD2, ckpt, tok):
    """The oracle's pipe dict for an SD 2 file; te is the OpenCLIP tower (make_sd2_checkpoint.OpenCLIPTextTower)."""
    cfg, te, unet, vae, extras = SD2.load_checkpoint(ckpt)
    return dict(cfg=cfg, te=te, unet=unet, vae=vae, tok=tok, alphas_cumprod=extras["alphas_cumprod"].float(),
                ac_source="checkpoint", sqrt_alphas_cumprod=extras["sqrt_alphas_cumprod"].float(),
                sqrt_one_minus_alphas_cumprod=extras["sqrt_one_minus_alphas_cumprod"].float())


MHA_PARTS = ("_q_proj", "_k_proj", "_v_proj", "_out_proj")


def convert_sd2_key(NW, key):
    """A1111 networks.convert_diffusers_name_to_compvis(key, is_sd2=True): the SD 1 rules (the oracle's), except
    text-encoder keys, which name OpenCLIP modules of the wrapped FrozenOpenCLIPEmbedder (prefix model_)."""
    import re
    m = re.match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)", key)
    if m is None:
        return NW.kohya_to_compvis(key)
    i, rest = m.groups()
    if "mlp_fc1" in rest:
        return f"model_transformer_resblocks_{i}_{rest.replace('mlp_fc1', 'mlp_c_fc')}"
    if "mlp_fc2" in rest:
        return f"model_transformer_resblocks_{i}_{rest.replace('mlp_fc2', 'mlp_c_proj')}"
    return f"model_transformer_resblocks_{i}_{rest.replace('self_attn', 'attn')}"


def network_update(NW, w, orig, mult):
    """The oracle's per-module update (networks.apply): calc_updown, then scale (file scale, else alpha / dim),
    then the multiplier, reshaped to the weight."""
    updown, dim, _ = NW.calc_updown({k: v for k, v in w.items() if k not in ("alpha", "scale")}, orig)
    alpha = w["alpha"].item() if "alpha" in w else None
    scale = w["scale"].item() if "scale" in w else (alpha / dim if dim is not None and alpha is not None else 1.0)
    if updown.numel() == orig.numel():
        updown = updown.reshape(orig.shape)
    return updown * scale * mult


def apply_networks_sd2(NW, S):
    """reference.run's networks.apply for an SD 2 pipe, as A1111 1.10's Lora extension patches SD 2:
    UNet keys as for SD 1 (the oracle's conversion, onto the diffusers UNet through sd_ldm's name map); text-encoder
    keys by convert_sd2_key onto the OpenCLIP tower's named modules (A1111's network_layer_mapping, "model_" +
    name with "." -> "_"). Linear modules (mlp.c_fc, mlp.c_proj) get W += update. Each nn.MultiheadAttention
    gets q / k / v into the thirds of in_proj_weight and out into out_proj.weight only when the network has
    all four (network_apply_weights' MHA branch); otherwise none of them: its out_proj is a Linear A1111 never
    patches on its own, as MultiheadAttention.forward reads out_proj.weight without calling out_proj.forward."""
    import torch

    @torch.no_grad()
    def apply(nets, lora_dir, cfg, te, unet):
        unet_map = {}
        for ldm, key in S.component_map(cfg, "unet", unet).items():
            if ldm.endswith(".weight"):
                unet_map["diffusion_model_" + ldm[len(S.UNET_PREFIX):-len(".weight")].replace(".", "_")] = key
        unet_params = dict(unet.named_parameters())
        te_layers = {"model_" + n.replace(".", "_"): m for n, m in te.named_modules() if n}
        report = []
        for name, te_mult, unet_mult in nets:
            path = NW.find_network(lora_dir, name)
            groups, unmatched = {}, 0
            for k, v in NW.load_file(path).items():
                base, _, part = k.partition(".")
                layer = convert_sd2_key(NW, base)
                if layer not in unet_map and "lora_unet" in base:
                    layer = base.replace("lora_unet", "diffusion_model")
                groups.setdefault(layer, {})[part] = v
            counts = {"unet": 0, "te_linear": 0, "te_attention": 0}
            for layer, w in groups.items():
                if layer in unet_map:
                    p = unet_params[unet_map[layer]]
                    p.copy_(p + network_update(NW, w, p, unet_mult))
                    counts["unet"] += 1
                elif layer in te_layers and type(te_layers[layer]) is torch.nn.Linear:
                    p = te_layers[layer].weight
                    p.copy_(p + network_update(NW, w, p, te_mult))
                    counts["te_linear"] += 1
                elif not any(layer.endswith(x) for x in MHA_PARTS) or layer.rsplit("_", 2)[0] not in te_layers:
                    unmatched += 1
            for layer, mod in te_layers.items():
                if isinstance(mod, torch.nn.MultiheadAttention) and all(layer + x in groups for x in MHA_PARTS):
                    qw, kw, vw = mod.in_proj_weight.chunk(3, 0)
                    ups = [network_update(NW, groups[layer + x], t, te_mult) for x, t in zip(MHA_PARTS, (qw, kw, vw))]
                    mod.in_proj_weight += torch.vstack(ups)
                    mod.out_proj.weight += network_update(NW, groups[layer + "_out_proj"], mod.out_proj.weight, te_mult)
                    counts["te_attention"] += 1
            report.append({"name": name, "file": os.path.basename(path), "te_multiplier": te_mult,
                           "unet_multiplier": unet_mult, "modules": counts, "unmatched_keys": unmatched})
        return report
    return apply


class SD2Semantics:
    """While patched(): reference.encode_prompt = the SD 2 conditioning (OpenCLIP penultimate + ln_final, pad id 0
    after the first EOS, Original emphasis, clip skip ignored); for a v checkpoint reference.KDenoiser =
    CompVisVDenoiser and reference.TimestepDenoiser = CompVisTimestepsVDenoiser (see the module docstring)."""

    def __init__(self, R, pipe):
        self.R, self.pipe = R, pipe
        self.v = pipe["cfg"]["parameterization"] == "v"
        t = pipe["cfg"]["text_encoder"]
        self.eos, self.pad = t["eos_id"], t["pad_id"]

    def encode_prompt(self, te, tokenizer, text, clip_skip=1, embeddings=None):
        import torch
        R = self.R
        if embeddings is not None:
            raise SystemExit("textual inversion is not modelled for SD 2 here")
        chunks = R.prompt_chunks(tokenizer, text)
        zs = []
        with torch.no_grad():
            for ids, mults in chunks:
                tokens = torch.asarray([encoder_input_ids(ids, self.eos, self.pad)])
                z = te(tokens)  # ldm encode_with_transformer, layer "penultimate"; clip_skip not used (A1111)
                m = torch.tensor([mults], dtype=z.dtype)
                before = z.mean()
                z = z * m.reshape(m.shape + (1,)).expand(z.shape)
                after = z.mean()
                z = z * (before / after)
                if not torch.isfinite(z).all():
                    raise ValueError(f"non-finite conditioning for chunk {ids[:8]}...")
                zs.append(z)
        return torch.hstack(zs), chunks

    @contextlib.contextmanager
    def patched(self):
        R = self.R
        import networks as NW
        import sd_ldm as S
        saved = (R.encode_prompt, R.KDenoiser, R.TimestepDenoiser, R.LCMDenoiser, NW.apply)
        R.encode_prompt = self.encode_prompt
        NW.apply = apply_networks_sd2(NW, S)
        if self.v:
            import torch
            sqrt_ac, sqrt_1m = self.pipe["sqrt_alphas_cumprod"], self.pipe["sqrt_one_minus_alphas_cumprod"]

            class CompVisVDenoiser:
                """k-diffusion DiscreteVDDPMDenoiser.forward (sigma_data 1) around the oracle's EpsUNet."""

                def __init__(self, eps_unet, sched):
                    self.eps_unet, self.sched = eps_unet, sched

                def __call__(self, x, sigma, cond):
                    sigma_data = 1.0
                    c_skip = sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)
                    c_out = -sigma * sigma_data / (sigma ** 2 + sigma_data ** 2) ** 0.5
                    c_in = 1 / (sigma ** 2 + sigma_data ** 2) ** 0.5
                    c_skip, c_out, c_in = (c[:, None, None, None] for c in (c_skip, c_out, c_in))
                    return self.eps_unet(x * c_in, self.sched.sigma_to_t(sigma), cond) * c_out + x * c_skip

            class CompVisTimestepsVDenoiser:
                """A1111 sd_samplers_timesteps.CompVisTimestepsVDenoiser: x, t -> eps from the UNet's v."""

                def __init__(self, eps_unet):
                    self.eps_unet = eps_unet

                def __call__(self, x, t, cond):
                    v = self.eps_unet(x, t, cond)
                    ti = t.to(torch.int)
                    return sqrt_ac[ti, None, None, None] * v + sqrt_1m[ti, None, None, None] * x

            def no_lcm(*a, **k):
                raise SystemExit("LCM with a v-prediction checkpoint is not modelled")

            R.KDenoiser, R.TimestepDenoiser, R.LCMDenoiser = CompVisVDenoiser, CompVisTimestepsVDenoiser, no_lcm
        try:
            yield
        finally:
            R.encode_prompt, R.KDenoiser, R.TimestepDenoiser, R.LCMDenoiser, NW.apply = saved


# ---------------------------------------------------------------------------- cross-checks

def rel(a, b):
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)), float(np.abs(a - b).max())


def patch_transformers_text_model(R, hf, a):
    """The case's networks onto transformers' CLIPTextModel by the kohya names themselves (lora_te_ + its module
    path): an independent route to the patched text encoder, with separate q / k / v / out_proj modules. A layer's
    attention updates apply only when all four are in the file (A1111's MultiheadAttention rule)."""
    import torch
    import networks as NW
    _, nets = NW.parse_prompt(a.prompt)
    # transformers 5 names CLIPTextModel's modules without the text_model. its 4.x versions (and kohya's keys) have
    modules = {("lora_te_" if n.startswith("text_model.") else "lora_te_text_model_") + n.replace(".", "_"): m
               for n, m in hf.named_modules() if isinstance(m, torch.nn.Linear)}
    with torch.no_grad():
        for name, te_mult, _ in nets:
            groups = {}
            for k, v in NW.load_file(NW.find_network(a.lora_dir, name)).items():
                base, _, part = k.partition(".")
                groups.setdefault(base, {})[part] = v
            for base, w in groups.items():
                if base not in modules:
                    continue
                if "_self_attn_" in base:
                    layer = base[:base.index("_self_attn_")] + "_self_attn"
                    if not all(layer + x in groups for x in MHA_PARTS):
                        continue
                p = modules[base].weight
                p.copy_(p + network_update(NW, w, p, te_mult))


def crosscheck(R, SD2, pipe, a, res, ckpt, kd=None):
    """Independent recomputations of parts of the case; returns {name: {rel_l2, max_abs, ok}}."""
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextModel
    cfg = pipe["cfg"]
    v = cfg["parameterization"] == "v"
    out = {}

    def put(name, r, tol):
        out[name] = {"rel_l2": r[0], "max_abs": r[1], "ok": bool(r[0] <= tol)}

    # conditioning through transformers' CLIPTextModel (diffusers' OpenCLIP conversion)
    sd = load_file(ckpt)
    hf = CLIPTextModel(SD2.clip_text_config(cfg)).eval()
    conv = sfu.convert_open_clip_checkpoint(hf, sd, prefix=SD2.TEXT_PREFIX)
    hf.load_state_dict({k[len("text_model."):] if k.startswith("text_model.") else k: t.float()
                        for k, t in conv.items()}, strict=False)
    if getattr(a, "lora_dir", None):
        patch_transformers_text_model(R, hf, a)
    fln = hf.final_layer_norm if hasattr(hf, "final_layer_norm") else hf.text_model.final_layer_norm
    t = cfg["text_encoder"]
    with torch.no_grad():
        for side in ("cond", "uncond"):
            zs = []
            for ids, mults in res["meta"][side + "_chunks"]:
                x = torch.tensor([encoder_input_ids(ids, t["eos_id"], t["pad_id"])])
                z = fln(hf(input_ids=x, output_hidden_states=True).hidden_states[-2])
                m = torch.tensor([mults])
                before = z.mean()
                z = z * m[..., None]
                z = z * (before / z.mean())
                zs.append(z)
            put(f"{side}_via_transformers_CLIPTextModel", rel(torch.hstack(zs), res[side]), 1e-6)
    if a.clip_skip > 1:  # A1111 ignores CLIP skip for SD 2: the layer comes from the yaml ("penultimate")
        with torch.no_grad():
            ids = torch.tensor([encoder_input_ids(res["meta"]["cond_chunks"][0][0], t["eos_id"], t["pad_id"])])
            z_pen = pipe["te"](ids, layer_idx=1)
            z_skip = pipe["te"](ids, layer_idx=a.clip_skip)  # what honouring the setting would give
        out["clip_skip_would_change_conditioning"] = {"rel_l2": rel(z_skip, z_pen)[0], "max_abs": rel(z_skip, z_pen)[1],
                                                      "ok": bool(rel(z_skip, z_pen)[0] > 1e-2)}
    label = res["meta"]["sampler"]
    img2img = a.init_image is not None
    pred = "v_prediction" if v else "epsilon"
    kw = dict(num_train_timesteps=1000, beta_start=cfg["linear_start"], beta_end=cfg["linear_end"],
              beta_schedule="scaled_linear", prediction_type=pred)
    with torch.no_grad():
        if label == "Euler" and not img2img:
            from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
            from transformers import CLIPTokenizer
            sched = EulerDiscreteScheduler(**kw, timestep_spacing="linspace")
            sched.alphas_cumprod = pipe["alphas_cumprod"].clone()
            p = StableDiffusionPipeline(vae=pipe["vae"], text_encoder=hf, tokenizer=pipe["hf_tok"], unet=pipe["unet"],
                                        scheduler=sched, safety_checker=None, feature_extractor=None,
                                        requires_safety_checker=False)
            p.set_progress_bar_config(disable=True)
            lat = p(prompt_embeds=res["cond"], negative_prompt_embeds=res["uncond"], guidance_scale=a.cfg,
                    sigmas=res["sigmas"].tolist(), latents=res["noise"].clone(), height=a.height, width=a.width,
                    output_type="latent").images
            put(f"latents_via_diffusers_StableDiffusionPipeline_Euler_{pred}", rel(lat, res["latents"]), 1e-4)
        if label == "DDIM" and not img2img:
            from diffusers import DDIMScheduler
            sched = DDIMScheduler(**kw, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                  timestep_spacing="leading")
            sched.alphas_cumprod = pipe["alphas_cumprod"].clone()
            sched.set_timesteps(a.steps)
            if not torch.equal(sched.timesteps.flip(0)[:len(res["timesteps"])], res["timesteps"].to(sched.timesteps.dtype)):
                out["ddim_timesteps_match"] = {"ok": False}
            unet, cond, uncond = pipe["unet"], res["cond"], res["uncond"]
            x = res["noise"].clone()
            for ts in sched.timesteps[:-1]:  # A1111 stops one step early (len(timesteps) - 1 calls)
                e = unet(torch.cat([x, x]), ts, encoder_hidden_states=torch.cat([cond, uncond])).sample
                x = sched.step(e[1:] + (e[:1] - e[1:]) * a.cfg, ts, x, eta=0.0).prev_sample
            put(f"latents_via_diffusers_DDIMScheduler_{pred}", rel(x, res["latents"]), 1e-4)
        if kd is not None and label in ("Euler", "Euler a", "DPM++ 2M"):
            import crosscheck as CC
            ext = types.SimpleNamespace(CompVisDenoiser=kd["external"].CompVisVDenoiser if v else kd["external"].CompVisDenoiser)
            x_kd, sig = CC.kdiff_run({"sampling": kd["sampling"], "external": ext}, pipe, a, res)
            put("latents_via_k_diffusion_" + ("CompVisVDenoiser" if v else "CompVisDenoiser"), rel(x_kd, res["latents"]), 1e-5)
            out["k_diffusion_sigmas_identical"] = {"ok": bool(np.array_equal(np.asarray(sig), np.asarray(res["sigmas"])))}
    return out


# ---------------------------------------------------------------------------- driver

def make(args):
    sys.path.insert(0, os.path.abspath(args.ref))
    import numpy as np
    import torch
    import reference as R
    import make_sd2_checkpoint as SD2
    import a1111_unet  # A1111's UNet rule for sizes not multiples of 64 (tools/a1111_unet.py), before any UNet runs
    a1111_unet.apply()
    from transformers import CLIPTokenizer

    torch.set_num_threads(args.threads)
    hf_tok = CLIPTokenizer.from_pretrained(args.tokenizer)
    tok = OpenCLIPTokenizer(check_against=hf_tok)
    kd = None
    if args.kdiff:
        import crosscheck as CC
        kd = CC.load_kdiffusion(args.kdiff)
    pipes, sidecars = {}, {}
    for kind, (rel_path, want) in CKPTS.items():
        path = os.path.join(REPO, rel_path)
        got = sha256(path)
        if got != want:
            sys.exit(f"{rel_path}: sha256 {got} != expected {want} (rebuild it with tools/make_sd2_checkpoint.py)")
        with open(os.path.splitext(path)[0] + ".json") as f:
            sidecars[kind] = json.load(f)
    every = cases()
    if args.only:
        unknown = sorted(set(args.only) - set(every))
        if unknown:
            sys.exit(f"unknown case(s): {' '.join(unknown)}")
    golden = os.path.join(FIXTURES, "golden")
    os.makedirs(golden, exist_ok=True)
    entries, failures = {}, []
    for name, opts in every.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        kind = "v" if opts["ckpt"] == CKPTS["v"][0] else "eps"
        ckpt = os.path.join(REPO, opts["ckpt"])
        if kind not in pipes:
            pipes[kind] = load_pipeline(R, SD2, ckpt, tok)
            pipes[kind]["hf_tok"] = hf_tok
        pipe = pipes[kind]
        with tempfile.TemporaryDirectory() as tmp:
            a = R.build_parser().parse_args(to_argv(opts, ckpt, args.tokenizer, tmp, args.threads, PATH_ARGS))
            sem = SD2Semantics(R, pipe)
            with sem.patched():
                res = R.run(a, pipe)
                floor = R.float64_floor(a, pipe, res)
                checks = {} if args.no_crosscheck else crosscheck(R, SD2, pipe, a, res, ckpt, kd)
            pipe.pop("_as_torch.float64", None)
            dest = os.path.join(golden, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.makedirs(dest)
            for fn in KEEP:
                if os.path.exists(os.path.join(tmp, fn)):
                    shutil.copyfile(os.path.join(tmp, fn), os.path.join(dest, fn))
        bad = [k for k, c in checks.items() if not c["ok"]]
        if bad:
            failures.append((name, bad))
        with open(os.path.join(dest, "tokens.json")) as f:
            toks = json.load(f)
        t = pipe["cfg"]["text_encoder"]
        for side in ("cond", "uncond"):
            toks[side]["encoder_input_ids"] = [encoder_input_ids(c, t["eos_id"], t["pad_id"]) for c in toks[side]["chunks"]]
        with open(os.path.join(dest, "tokens.json"), "w") as f:
            json.dump(toks, f)
        with open(os.path.join(dest, "params.json")) as f:
            params = json.load(f)
        sc = sidecars[kind]
        params["sd2"] = {
            "parameterization": pipe["cfg"]["parameterization"],
            "denoiser": ("k_diffusion.external.CompVisVDenoiser (sigma_data 1)" if kind == "v" else
                         "k_diffusion.external.CompVisDenoiser") if res["meta"]["sampler"] not in ("DDIM", "PLMS") else
                        ("sd_samplers_timesteps.CompVisTimestepsVDenoiser: eps = sqrt_alphas_cumprod[t] * v + "
                         "sqrt_one_minus_alphas_cumprod[t] * x (checkpoint buffers)" if kind == "v" else
                         "sd_samplers_timesteps.CompVisTimestepsDenoiser"),
            "first_unet_eps": "raw UNet output: " + ("v" if kind == "v" else "eps"),
            "text": "OpenCLIP (open_clip SimpleTokenizer ids), layer penultimate (resblocks 0..layers-2) + ln_final, "
                    "no text_projection; ids after the first EOS set to 0 (tokens.json encoder_input_ids); Original "
                    "emphasis per chunk; CLIP skip ignored",
            "unet_heads_per_level": SD2.unet_heads(pipe["cfg"]["unet"]),
            "use_linear_in_transformer": True,
            "yaml": os.path.basename(os.path.splitext(ckpt)[0]) + ".yaml (" +
                    ("v2-inference-v.yaml shape" if kind == "v" else "v2-inference.yaml shape") + ")",
            "v_test_statistic": sc["v_test_statistic"],
            "v_test_would_return": sc["v_test"]["would_return"],
            "v_test_note": "A1111's is_using_v_parameterization_for_sd2 hardcodes the full SD 2 UNet and is only called "
                           "for 1024-wide text towers: for these tiny files the .yaml next to the checkpoint decides",
            "crosscheck": checks,
        }
        if opts["width"] % 64 or opts["height"] % 64:
            params["sd2"]["size_note"] = ("width/height not a multiple of 64: UNet skip sizes mismatch after the 3rd "
                                          "downsampling; as A1111's sd_hijack_unet, the UNet upsamples x2, convolves, "
                                          "then nearest-resizes to the skip (tools/a1111_unet.py patches this into the "
                                          "oracle's diffusers UNet, which would upsample straight to the skip's size)")
        params["golden_case"] = name
        params["golden_args"] = opts
        with open(os.path.join(dest, "params.json"), "w") as f:
            json.dump(params, f, indent=2)
        entry = {"args": opts, "checkpoint": opts["ckpt"], "checkpoint_sha256": CKPTS[kind][1],
                 "parameterization": pipe["cfg"]["parameterization"],
                 "sampler": params["sampler"], "scheduler": params["scheduler"], "unet_calls": params["unet_calls"],
                 "cond_chunks": len(toks["cond"]["chunks"]), "uncond_chunks": len(toks["uncond"]["chunks"]),
                 "files": sorted(os.listdir(dest)), "float32_vs_float64": floor}
        if params.get("t_enc") is not None:
            entry["t_enc"] = params["t_enc"]
        entries[name] = entry
        cc = ", ".join(f"{k} {c['rel_l2']:.1e}" for k, c in checks.items() if "rel_l2" in c)
        print(f"{name:16} {params['sampler']:9} {params['unet_calls']:3} UNet calls {time.time() - t0:5.1f}s  "
              f"f32-vs-f64 latents rel L2 {floor['latents_rel_l2']:.2e}  {cc}", flush=True)
    print(f"tokenizer: open_clip and transformers agreed on {tok.checked} fragments")
    a_dir, b_dir = os.path.join(golden, "sd2-euler"), os.path.join(golden, "sd2-clipskip2-euler_a")
    if os.path.isdir(a_dir) and os.path.isdir(b_dir):  # CLIP skip 2 must not change the SD 2 conditioning
        for fn in ("cond.npy", "uncond.npy"):
            if not np.array_equal(np.load(os.path.join(a_dir, fn)), np.load(os.path.join(b_dir, fn))):
                failures.append(("sd2-clipskip2-euler_a", [fn + " differs from sd2-euler's"]))
        print("clip skip 2: conditioning identical to sd2-euler's" if not failures else "clip skip check failed")
    if failures:
        sys.exit(f"cross-checks failed: {failures} (index.json not updated)")
    update_index(os.path.join(golden, "index.json"), entries)
    print(f"index.json: {len(entries)} case(s) added / replaced")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: reference.py, ...)")
    ap.add_argument("--tokenizer", required=True, help="clip-tokenizer dir made by REF/vocab.py (cross-check of the "
                                                       "open_clip tokenizer; the oracle's --tokenizer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    ap.add_argument("--kdiff", default=None, help="directory holding the k_diffusion package (unpacked "
                                                  "k-diffusion==0.1.1.post1 wheel) for the k-diffusion cross-check")
    ap.add_argument("--no-crosscheck", action="store_true")
    make(ap.parse_args())


if __name__ == "__main__":
    main()
