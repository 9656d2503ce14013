#!/usr/bin/env python3
"""Regenerate Atelier's committed golden fixtures from the PyTorch oracle of A1111 1.10.

Run by hand with the reference venv (see tools/README.md); the Swift tests never run it
and never read the oracle. The oracle's diffusers UNet gets A1111's rule for sizes that are
not multiples of 64 (tools/a1111_unet.py, applied before any UNet runs), and the oracle gets
A1111's UniPC sampler, the one it does not model (tools/a1111_unipc.py, applied with it), and A1111's sampler
options s_churn / s_tmin / s_tmax / s_noise / sigma_min / sigma_max / rho / always_discard_next_to_last_sigma
(tools/a1111_sampler_options.py, applied with it; a no-op for cases that set none):

    REF_VENV/bin/python tools/make_goldens.py --ref PATH/TO/shared/ref \
        --tokenizer MODELS_DIR/clip-tokenizer [--group all|txt2img|img2img|samplers|samplers2|seeds|prompts|networks|controlnet|hires|inpaint2|vae|img2img2|sde|unipc|options|tiling] \
        [--only CASE ...] \
        [--noise-only | --no-noise]

Writes (paths relative to the repository root):

  Tests/Fixtures/golden/<case>/   one txt2img / img2img / inpainting generation per case, made in-process by the
      oracle's reference.py (`run` + `float64_floor`, i.e. `reference.py ... --f64`) on the
      committed checkpoint Tests/Fixtures/models/tiny-sd15.safetensors, 2 threads. Only the
      files in KEEP are kept; the float64 twin's arrays are dropped, its distances stay in
      params.json["float32_vs_float64"]. params.json also gets "golden_case" / "golden_args"
      (the reference.py options used); for the twin, DPM fast gets sigma_min / sigma_max as Python
      floats (dpm_fast_f32_grid: else its img2img twin ends in NaN). img2img cases
      (img2img_cases(), `--group img2img`) read Tests/Fixtures/images/{init,mask}-128.png
      (tools/make_test_images.py); their args hold those paths relative to the repository root. The samplers group
      (sampler_cases(), `--group samplers`) drops image_float.npy (DROP), and so does the
      seeds group (seed_cases(), `--group seeds`: variation seed / seed resize, args
      subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h).
      The samplers2 group (samplers2_cases(), `--group samplers2`: PLMS, DDIM CFG++, LCM with its
      own schedule and Karras, Restart with and without a restart segment, img2img PLMS / Restart,
      DPM fast txt2img (n % 3 = 1 / 0, eta 0) and img2img)
      also drops image_float.npy; PLMS / DDIM CFG++ keep timesteps.npy and ddim_alphas{,_prev}.npy,
      LCM / Restart sigmas.npy and sampler_noise.npy (every image-RNG draw the sampler made);
      Restart's (sigma, sigma_next) step list is params.json["restart_pairs"].
      The prompts group (prompt_cases(), `--group prompts`: prompt editing, alternation, AND)
      and the networks group (network_cases(), `--group networks`: LoRA / LoHa / LoKr tags and
      textual inversion, read from the committed Tests/Fixtures/networks/{Lora,embeddings},
      args lora_dir / embeddings_dir relative to the repository root) also drop image_float.npy
      and keep every cond_distinct_<j>.npy (KEEP_PREFIX; one per distinct conditioning, in
      the order of params.json["distinct_conds"]; schedules in params.json["prompt_schedules"]).
      The controlnet group (controlnet_cases(), `--group controlnet`: one sd-webui-controlnet unit,
      the oracle's --controlnet ... flags; args controlnet = the committed
      Tests/Fixtures/controlnet/tiny-controlnet-canny.safetensors and control_image =
      Tests/Fixtures/images/control-*.png, relative to the repository root) drops image_float.npy
      and control_hint.npy (it is exactly control_map.png / 255, [1, 3, h, w]) and keeps control_map.png
      (the detected map after the resize mode) and every control_residual_NN.npy (KEEP_PREFIX;
      NN = 00..12: the first active call's 13 weighted residuals, batch [cond, uncond]); the
      unit's settings, processor_res, detected_size, hint_shape, sampling_steps and the per-call
      (call, sampling_step, active) list are in params.json["controlnet"].
      The hires group (hires_cases(), `--group hires`: txt2img with the hires fix, args enable_hr,
      hr_scale, hr_resize_x, hr_resize_y, hr_upscaler, hr_second_pass_steps, denoising_strength;
      the six latent upscale modes and the Lanczos / Nearest pixel upscalers) keeps the second
      pass under the usual names (init_latent.npy = the upscaled, cropped latent, init_image.png =
      the upscaled first-pass image for pixel upscalers, t_enc = hr_steps - 1), the first pass as
      every firstpass_*.npy (KEEP_PREFIX: noise, sigmas or timesteps, first_unet_eps,
      first_denoised, steps, sampler_noise, latents) and firstpass_image.png, and every
      cond_distinct_<j>.npy (the second pass's); it drops image_float.npy and
      firstpass_image_float.npy. params.json["hires"] (and index.json "hires", less the first
      pass's prompt schedules) has upscale_to, truncate, latent_shape, second_pass_steps,
      schedule_steps, t_enc and the UNet calls per pass; its float32_vs_float64 also has
      firstpass_{first_denoised,latents}_*, firstpass_image_uint8_max_abs, init_latent_* and
      (pixel upscalers) init_image_uint8_max_abs (float64_floor_hires).
      The inpaint2 group (inpaint2_cases(), `--group inpaint2`: 10 cases, 128 px, 10 steps, seeds 600-609)
      drops image_float.npy. Inpainting: DDIM and PLMS (mask blended before the UNet), latent nothing,
      only masked with padding 8 at 128x96 (box grown towards 4:3, pasted back at 128x128), an RGBA mask
      with a soft alpha (Tests/Fixtures/images/mask-rgba-128.png), mask_blur_x 2 / mask_blur_y 6 with
      no_mask_round, a 160x120 init image and mask (init-160x120.png, mask-160x120.png) at 128x128; these
      three PNGs are made by make_inpaint2_images() from init-128.png / mask-128.png before the group runs.
      img2img with resize_mode 1 / 2 / 3 (from init-160x120.png) and initial_noise_multiplier 0.9: the oracle
      only does "just resize" and no noise multiplier, so A1111Img2ImgExtras adds them around reference.run
      (modes 1/2: inpaint.resize_image into a W x H temp PNG given as --init-image; mode 3: load_init_image /
      encode_image patched to encode at the image's own size and interpolate the latent bilinearly to
      H/8 x W/8; noise multiplier: TorchImageRNG's first draw scaled in float32, noise.npy rewritten with the
      raw draw, "Noise multiplier: 0.9" appended to params.json's infotext and image.png's text chunk).
      Args resize_mode / initial_noise_multiplier are recorded but never passed to the oracle; init_image is
      the original 160x120 file, params.json gets resize_mode (and latent_upscale for mode 3).
      The vae group (vae_cases(), `--group vae`: 3 cases, 128 px, 10 steps, seeds 700-702) drops image_float.npy:
      a separate VAE file (A1111's "SD VAE", Tests/Fixtures/vae/tiny-vae-ft.{safetensors,pt}, made by
      tools/make_vae_fixtures.py) with txt2img Euler, img2img Euler a (the file's encoder) and the .pt with
      DPM++ 2M. The oracle has no VAE option: VaeFileCheckpoints runs it on a temporary merged checkpoint (the
      tiny checkpoint with its first_stage_model.* replaced by the file's, A1111's load_vae_dict filtering) and
      then restores the ORIGINAL checkpoint's sha256 in params.json / the infotext's "Model hash" and inserts
      "VAE hash: <file sha256[:10]>, VAE: <file name>" after "Model: ..." (params.json and image.png). Args vae
      (relative to the repository root; never passed to the oracle) and vae_sha256; params.json also gets vae,
      vae_sha256, vae_name, vae_hash and vae_merged_checkpoint_sha256.
      The img2img2 group (img2img2_cases(), `--group img2img2`: 7 cases, 128 px, 10 steps, seeds 1000-1006)
      drops image_float.npy: img2img from init-128.png on Heun, DPM2, DPM2 a, LMS, DPM++ 2S a, LCM and
      DDIM CFG++ (strength 0.6-0.75, eta at A1111's defaults, not in the args).
      The unipc group (unipc_cases(), `--group unipc`: 3 cases, 128 px, seeds 1200-1202) is A1111's UniPC
      (tools/a1111_unipc.py: bh1, time_uniform, order 3, lower order final), txt2img 10 / 20 steps and img2img
      (strength 0.6): it keeps timesteps.npy (A1111's get_timesteps list UniPC is given, [:t_enc] for img2img)
      and drops image_float.npy and ddim_alphas{,_prev}.npy (DDIM's tables, which UniPC does not use);
      params.json["unipc"] has the options, the continuous time grid t (steps + 1 float32 values) with the
      schedule there (log_alpha, alpha, sigma, lambda), model_t / model_input_t (each UNet call's t and the
      float timestep (t - 1/1000) * 1000 it gets), orders / correctors per update and every update's
      coefficients (h, rks, R, b, rhos_p, rhos_c, ...); index.json "unipc" the grid, the model input times
      and the orders.
      The options group (options_cases(), `--group options`: 9 cases, 128 px, 10 steps, seeds 1300-1308) sets A1111's
      sampler options (args under their A1111 names s_churn, s_tmin, s_tmax, s_noise, sigma_min, sigma_max, rho,
      always_discard_next_to_last_sigma; modelled as API override_settings, tools/a1111_sampler_options.py): churn on
      Euler / Heun (with a sigma window) / DPM2 / img2img Euler, s_noise on Euler a (ignored by A1111: no
      infotext, the plain Euler a result) and DPM++ 2M SDE, sigma_min / sigma_max / rho on Karras, sigma_max on
      Exponential, always discard on Euler. It drops image_float.npy and keeps sampler_noise.npy (churn: one
      image-RNG draw per step, also where gamma is 0); params.json["sampler_options"] has the given options, the
      k-diffusion function and kwargs A1111 passes, the schedule kwargs, which options applied / were ignored,
      the infotext entries (also appended to params.json's infotext and image.png's text chunk) and, for churn,
      every step's gamma, sigma_hat and churn std; index.json "sampler_options" the kwargs, applied / ignored
      and the infotext entries.
      The tiling group (tiling_cases(), `--group tiling`: 3 cases, seeds 1400-1402) is A1111's Tiling (args tiling):
      every UNet and VAE conv pads circularly (tools/a1111_tiling.py); params.json gets "tiling": true and
      ", Tiling: True" in its infotext. It drops image_float.npy.
  Tests/Fixtures/golden/index.json   every case: its options, UNet call count, chunk counts,
      float32-vs-float64 distances.
  Tests/Fixtures/noise/*.npy      torch CPU-RNG / A1111 Philox ("NV") draws, from the oracle's
      pure-numpy noise.py (`noise.py dump SOURCE SEED SHAPE N_DRAWS OUT`), shape [N_DRAWS, *SHAPE].

The checkpoint is not made here; it is committed. To rebuild it (deterministic for
torch 2.15; sha256 a7caa29f...):
    REF_VENV/bin/python REF/make_checkpoint.py --size tiny --seed 0 --fp16 \
        --out Tests/Fixtures/models/tiny-sd15.safetensors
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256, to_argv, set_png_parameters  # noqa: E402 (tools/ is the script's own folder)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
CKPT = os.path.join(FIXTURES, "models", "tiny-sd15.safetensors")
CKPT_SHA256 = "a7caa29fe88432bbcf4de833985faded804ab9f60baf7121ce011b8540e8ff0a"

KEEP = ("params.json", "tokens.json", "cond.npy", "uncond.npy", "noise.npy", "sigmas.npy",
        "timesteps.npy", "ddim_alphas.npy", "ddim_alphas_prev.npy",
        "first_unet_in.npy", "first_unet_t.npy", "first_unet_eps.npy", "first_denoised.npy",
        "steps.npy", "sampler_noise.npy", "latents.npy", "image_float.npy", "image.png",
        # img2img (only written by the oracle when --init-image is given)
        "init_latent.npy", "init_image.png",
        # inpainting (--mask)
        "latent_nmask.npy", "init_latent_encoded.npy", "latents_unblended.npy",
        "inpaint_image_mask.png", "inpaint_mask_for_overlay.png", "inpaint_overlay.png", "image_decoded.png",
        # ControlNet (--controlnet; control_residual_NN.npy through KEEP_PREFIX)
        "control_hint.npy", "control_map.png",
        # hires fix (--enable-hr; firstpass_*.npy through KEEP_PREFIX)
        "firstpass_image.png")

PROMPT = "a photo of a (cat:1.2), [blurry] masterpiece, \\(escaped\\)"  # text: ... \(escaped\)
NEGATIVE = "lowres, bad anatomy"

# > 75 tokens: chunk 1 reaches 75 tokens inside "(highly detailed intricate textures:1.2)"; the
# comma after "crisp air" is 4 tokens back, so A1111's comma backtracking closes chunk 1 at
# 72 tokens and moves "highly detailed intricate" (weight 1.2) to chunk 2; BREAK then starts
# chunk 3. Cond = 3 chunks (231 tokens), uncond = 1 chunk (77): separate UNet calls.
LONG_PROMPT = ("a breathtaking (wide angle:1.1) photograph of a quiet mountain village in early winter, "
               "snow on the rooftops, smoke rising from stone chimneys, a frozen river winding through pine "
               "forests, soft morning light, long shadows, a wooden bridge, children playing, a red sleigh "
               "pulled by two horses, lanterns, church bell tower, distant peaks, [low clouds], crisp air, "
               "(highly detailed intricate textures:1.2) and subtle reflections, sharp focus, hyperrealistic, "
               "award winning photo, national geographic, 8k uhd, film grain BREAK "
               "a (small black cat:1.3) sitting on a windowsill, warm candle light")

BASE = dict(prompt=PROMPT, negative=NEGATIVE, steps=20, cfg=7, width=128, height=128)

# img2img / inpainting inputs (committed; made by tools/make_test_images.py). Stored in the
# args relative to the repository root; to_argv makes them absolute for the oracle.
INIT_IMAGE = "Tests/Fixtures/images/init-128.png"
MASK = "Tests/Fixtures/images/mask-128.png"
# extra networks (committed; made by REF/make_networks.py, see Tests/Fixtures/networks/README.md)
LORA_DIR = "Tests/Fixtures/networks/Lora"
EMBEDDINGS_DIR = "Tests/Fixtures/networks/embeddings"
# ControlNet (committed; tools/make_controlnet_fixtures.py / REF/make_controlnet.py, tools/make_test_images.py)
CONTROLNET = "Tests/Fixtures/controlnet/tiny-controlnet-canny.safetensors"
CONTROL_IMAGE = "Tests/Fixtures/images/control-160x128.png"        # the oracle's control_160x128.png
CONTROL_RGBA = "Tests/Fixtures/images/control-rgba-128x128.png"
PATH_ARGS = ("init_image", "mask", "lora_dir", "embeddings_dir", "controlnet", "control_image")
# the inpaint2 group's extra inputs (made by make_inpaint2_images() from init-128.png / mask-128.png)
INIT_160x120 = "Tests/Fixtures/images/init-160x120.png"
MASK_160x120 = "Tests/Fixtures/images/mask-160x120.png"
MASK_RGBA = "Tests/Fixtures/images/mask-rgba-128.png"
# separate VAE files (A1111 models/VAE/*; committed, made by tools/make_vae_fixtures.py)
VAE_FT = "Tests/Fixtures/vae/tiny-vae-ft.safetensors"
VAE_FT_PT = "Tests/Fixtures/vae/tiny-vae-ft.pt"
# golden args the oracle has no flag for: A1111 behaviour this script adds around it (A1111Img2ImgExtras,
# VaeFileCheckpoints)
ORACLE_EXTRA_ARGS = ("resize_mode", "initial_noise_multiplier", "vae")


def cases():
    out = {}
    for sampler, s_slug in (("Euler", "euler"), ("Euler a", "euler_a"), ("DPM++ 2M", "dpmpp_2m")):
        for sched in ("Automatic", "Uniform", "Karras", "Exponential"):
            out[f"{s_slug}-{sched.lower()}"] = dict(BASE, sampler=sampler, scheduler=sched, seed=42)
    out["ddim"] = dict(BASE, sampler="DDIM", scheduler="Automatic", seed=7)
    out["clipskip2-euler_a"] = dict(BASE, sampler="Euler a", scheduler="Automatic", seed=1234, clip_skip=2)
    out["long-break-dpmpp_2m"] = dict(BASE, prompt=LONG_PROMPT, negative=NEGATIVE, sampler="DPM++ 2M",
                                      scheduler="Karras", seed=3)
    out["nv-euler_a"] = dict(BASE, sampler="Euler a", scheduler="Automatic", seed=42, randn_source="NV")
    out["ensd-euler_a"] = dict(BASE, sampler="Euler a", scheduler="Automatic", seed=42, ensd=31337)
    out["nonsquare-euler"] = dict(BASE, sampler="Euler", scheduler="Automatic", seed=5, steps=12,
                                  width=160, height=128)
    return out


def img2img_cases():
    """img2img (posterior mean, "just resize") and inpainting (original 512-style UNet, i.e. the
    4-channel model with the latent mask blend) on the committed init image / mask."""
    out = {}
    i2i = dict(BASE, scheduler="Automatic", init_image=INIT_IMAGE)
    out["i2i-euler"] = dict(i2i, sampler="Euler", seed=42, denoising_strength=0.6)
    out["i2i-euler_a"] = dict(i2i, sampler="Euler a", seed=43, denoising_strength=0.75)
    out["i2i-dpmpp_2m-karras"] = dict(i2i, sampler="DPM++ 2M", scheduler="Karras", seed=44, denoising_strength=0.5)
    out["i2i-ddim"] = dict(i2i, sampler="DDIM", seed=45, denoising_strength=0.6)
    inp = dict(i2i, mask=MASK, mask_blur=4, inpainting_fill=1, inpaint_full_res=False,
               inpaint_full_res_padding=32, inpainting_mask_invert=False)
    out["inpaint-original"] = dict(inp, sampler="Euler", seed=46, denoising_strength=0.75)
    out["inpaint-fill-onlymasked"] = dict(inp, sampler="Euler a", seed=47, denoising_strength=0.8,
                                          inpainting_fill=0, inpaint_full_res=True)
    out["inpaint-latent-noise"] = dict(inp, sampler="DPM++ 2M", seed=48, denoising_strength=0.9,
                                       inpainting_fill=2)
    out["inpaint-invert-blur0"] = dict(inp, sampler="Euler", seed=49, denoising_strength=0.7,
                                       mask_blur=0, inpainting_mask_invert=True)
    return out


def sampler_cases():
    """txt2img on the other k-diffusion samplers (their Automatic schedule; LMS also with Karras)
    and Euler on every other schedule of A1111 1.10. image_float.npy is not kept (DROP)."""
    out = {}
    for slug, sampler, seed in (("heun", "Heun", 50), ("lms", "LMS", 51), ("dpm2", "DPM2", 52),
                                ("dpm2_a", "DPM2 a", 53), ("dpmpp_2s_a", "DPM++ 2S a", 54)):
        out[slug] = dict(BASE, sampler=sampler, scheduler="Automatic", seed=seed)
    out["lms-karras"] = dict(BASE, sampler="LMS", scheduler="Karras", seed=55)
    for slug, sched, seed in (("polyexponential", "Polyexponential", 60), ("sgm_uniform", "SGM Uniform", 61),
                              ("kl_optimal", "KL Optimal", 62),
                              ("align_your_steps", "Align Your Steps", 63)):  # 20 steps: AYS table resampled
        out[f"euler-{slug}"] = dict(BASE, sampler="Euler", scheduler=sched, seed=seed)
    out["euler-align_your_steps-11"] = dict(BASE, sampler="Euler", scheduler="Align Your Steps", seed=64,
                                            steps=11)  # 11 steps: the AYS table as is
    for slug, sched, seed in (("simple", "Simple", 65), ("normal", "Normal", 66),
                              ("ddim", "DDIM", 67),  # the DDIM *schedule* with Euler
                              ("beta", "Beta", 68)):
        out[f"euler-{slug}"] = dict(BASE, sampler="Euler", scheduler=sched, seed=seed)
    return out


def samplers2_cases():
    """txt2img / img2img on A1111's own samplers: PLMS and DDIM CFG++ (timestep samplers: timesteps.npy,
    ddim_alphas.npy, ddim_alphas_prev.npy, no sigmas), LCM (the LCM denoiser on its 50-entry grid:
    Automatic = the grid's own uniform schedule; also Karras over the grid's sigma range) and Restart
    (Automatic = Karras; < 20 steps: plain Heun, no restart segment; >= 20: Karras(steps - 9) and one
    restart segment of 9 Heun steps from the sigma nearest 0.1 back up to the one nearest 2, re-noised
    with the image RNG's next draw; the (sigma, sigma_next) pairs are in params.json["restart_pairs"]).
    DPM fast (k-diffusion sample_dpm_fast over the model's sigma range: n = steps UNet-denoiser calls,
    txt2img with 10 and 12 steps (n % 3 = 1 / 0), eta 0, and img2img; sigmas.npy is the schedule A1111
    reports, the sampler itself uses only its ends).
    128 px, the usual prompt, fewer steps. image_float.npy is not kept (DROP); sampler_noise.npy
    (LCM, Restart with restart segments, DPM fast) is."""
    out = {}
    out["plms"] = dict(BASE, steps=10, sampler="PLMS", scheduler="Automatic", seed=70)
    out["ddim_cfgpp"] = dict(BASE, steps=10, sampler="DDIM CFG++", scheduler="Automatic", seed=71)
    out["lcm"] = dict(BASE, steps=6, cfg=1.5, sampler="LCM", scheduler="Automatic", seed=72)
    out["restart-8"] = dict(BASE, steps=8, sampler="Restart", scheduler="Automatic", seed=73)    # no restart segment
    out["restart-20"] = dict(BASE, steps=20, sampler="Restart", scheduler="Automatic", seed=74)  # one restart segment
    i2i = dict(BASE, scheduler="Automatic", init_image=INIT_IMAGE)
    out["i2i-plms"] = dict(i2i, steps=10, sampler="PLMS", seed=75, denoising_strength=0.6)      # t_enc 6: timesteps[:6]
    # t_enc = int(0.7 * 20) = 14: Restart gets sigmas[5:] (16 sigmas, 15 steps < 20): no restart segment
    out["i2i-restart"] = dict(i2i, steps=20, sampler="Restart", seed=76, denoising_strength=0.7)
    out["lcm-karras"] = dict(BASE, steps=6, cfg=1.5, sampler="LCM", scheduler="Karras", seed=77)
    # DPM fast (k-diffusion sample_dpm_fast, A1111 passes sigma_min / sigma_max of the model's sigmas and
    # n = steps; ancestral eta 1 by default): orders 3,...,3,(n % 3) for n % 3 != 0, 3,...,3,2,1 for n % 3 == 0
    out["dpm_fast-10"] = dict(BASE, steps=10, sampler="DPM fast", scheduler="Automatic", seed=80)   # 3,3,3,1
    out["dpm_fast-12"] = dict(BASE, steps=12, sampler="DPM fast", scheduler="Automatic", seed=81)   # 3,3,3,2,1
    out["dpm_fast-eta0"] = dict(BASE, steps=9, sampler="DPM fast", scheduler="Automatic", seed=82, eta=0.0)
    # img2img: smin = sigmas[-2], smax = sigmas[0] of the truncated schedule, n = len(sigmas) - 1 (t_enc + 1)
    out["i2i-dpm_fast"] = dict(i2i, steps=10, sampler="DPM fast", seed=83, denoising_strength=0.6)
    return out


def img2img2_cases():
    """img2img (init-128.png, "just resize", posterior mean) on the samplers the img2img / samplers2 groups
    leave out: Heun, DPM2, DPM2 a, LMS, DPM++ 2S a, LCM (cfg 1.5 as the samplers2 LCM cases), DDIM CFG++.
    128 px, the usual prompt, 10 steps, scheduler Automatic (Karras for DPM2 / DPM2 a / DPM++ 2S a), strength
    0.6-0.75, seeds 1000-1006; eta left at A1111's defaults (not in the args: ancestral 1, DDIM CFG++ 0).
    image_float.npy is not kept (DROP)."""
    out = {}
    i2i = dict(BASE, steps=10, scheduler="Automatic", init_image=INIT_IMAGE)
    out["i2i-heun"] = dict(i2i, sampler="Heun", seed=1000, denoising_strength=0.6)
    out["i2i-dpm2"] = dict(i2i, sampler="DPM2", seed=1001, denoising_strength=0.65)
    out["i2i-dpm2_a"] = dict(i2i, sampler="DPM2 a", seed=1002, denoising_strength=0.75)
    out["i2i-lms"] = dict(i2i, sampler="LMS", seed=1003, denoising_strength=0.7)
    out["i2i-dpmpp_2s_a"] = dict(i2i, sampler="DPM++ 2S a", seed=1004, denoising_strength=0.75)
    out["i2i-lcm"] = dict(i2i, cfg=1.5, sampler="LCM", seed=1005, denoising_strength=0.6)
    out["i2i-ddim_cfgpp"] = dict(i2i, sampler="DDIM CFG++", seed=1006, denoising_strength=0.7)
    return out


def sde_cases():
    """The SDE samplers (noise from k-diffusion's BrownianTreeNoiseSampler: one torchsde tree per image
    over the full schedule's [min positive, max] sigma, entropy = the image seed) and DPM adaptive (the
    image RNG; data-dependent step count, params.json["dpm_adaptive_info"]): txt2img on each with its
    Automatic schedule, one with eta 0.5, one with a non-default schedule, and img2img on each. 128 px,
    the usual prompt, 10 steps, seeds 1100-1112. image_float.npy is not kept (DROP)."""
    out = {}
    t = dict(BASE, steps=10, scheduler="Automatic")
    out["dpmpp_sde"] = dict(t, sampler="DPM++ SDE", seed=1100)                  # Karras, 2 calls / step
    out["dpmpp_2m_sde"] = dict(t, sampler="DPM++ 2M SDE", seed=1101)            # Exponential
    out["dpmpp_2m_sde_heun"] = dict(t, sampler="DPM++ 2M SDE Heun", seed=1102)  # Exponential, heun solver
    out["dpmpp_3m_sde"] = dict(t, sampler="DPM++ 3M SDE", seed=1103)            # Exponential, discard
    out["dpm_adaptive"] = dict(t, sampler="DPM adaptive", seed=1104)
    out["dpmpp_2m_sde-eta05"] = dict(t, sampler="DPM++ 2M SDE", seed=1105, eta=0.5)
    out["dpmpp_sde-uniform"] = dict(t, sampler="DPM++ SDE", scheduler="Uniform", seed=1106)
    i2i = dict(t, init_image=INIT_IMAGE)
    out["i2i-dpmpp_sde"] = dict(i2i, sampler="DPM++ SDE", seed=1107, denoising_strength=0.6)
    out["i2i-dpmpp_2m_sde"] = dict(i2i, sampler="DPM++ 2M SDE", seed=1108, denoising_strength=0.7)
    out["i2i-dpmpp_2m_sde_heun"] = dict(i2i, sampler="DPM++ 2M SDE Heun", seed=1109, denoising_strength=0.65)
    out["i2i-dpmpp_3m_sde"] = dict(i2i, sampler="DPM++ 3M SDE", seed=1110, denoising_strength=0.75)
    out["i2i-dpm_adaptive"] = dict(i2i, sampler="DPM adaptive", seed=1111, denoising_strength=0.6)
    return out


def unipc_cases():
    """A1111's UniPC (tools/a1111_unipc.py, patched into the oracle: bh1, time_uniform, order 3, lower order final;
    a timestep sampler, so the schedule is ignored): txt2img 10 and 20 steps, img2img 10 steps at strength 0.6
    (t_enc 6: UniPC gets timesteps[:6], 6 steps from t_start = 501/1000 + 1/1000 while x is noised to
    timesteps[6] = 601, as A1111). 128 px, the usual prompt, seeds 1200-1202. timesteps.npy is kept;
    image_float.npy and ddim_alphas{,_prev}.npy are not (DROP); params.json["unipc"] has the time grid."""
    out = {}
    t = dict(BASE, scheduler="Automatic", sampler="UniPC")
    out["unipc"] = dict(t, steps=10, seed=1200)        # 10 model calls, orders 1,2,3,3,3,3,3,3,2,1
    out["unipc-20"] = dict(t, steps=20, seed=1201)
    out["i2i-unipc"] = dict(t, steps=10, seed=1202, init_image=INIT_IMAGE, denoising_strength=0.6)  # orders 1,2,3,3,2,1
    return out


def options_cases():
    """A1111's sampler options (settings, as the API's override_settings sets them; tools/a1111_sampler_options.py),
    128 px, the usual prompt, 10 steps, seeds 1300-1308, each case's args carrying the options under their A1111 names.
    Floats throughout (A1111 writes the JSON value's str() into the infotext: 5.0 -> "5.0"). image_float.npy is not
    kept (DROP); sampler_noise.npy is (churn: one image-RNG draw per step, the first after the initial noise)."""
    out = {}
    t = dict(BASE, steps=10, scheduler="Automatic")
    out["euler-churn"] = dict(t, sampler="Euler", seed=1300, s_churn=0.5)                  # gamma 0.05 every step
    out["heun-churn-window"] = dict(t, sampler="Heun", seed=1301, s_churn=1.0, s_tmin=0.5,
                                    s_tmax=5.0)                                           # gamma 0.1 for 0.5 <= sigma <= 5
    out["dpm2-churn"] = dict(t, sampler="DPM2", seed=1302, s_churn=0.3)                    # Automatic = Karras, discard
    out["euler_a-snoise"] = dict(t, sampler="Euler a", seed=1303, s_noise=0.9)             # ignored by A1111
    out["dpmpp_2m_sde-snoise"] = dict(t, sampler="DPM++ 2M SDE", seed=1304, s_noise=0.95)  # Brownian noise * 0.95
    out["dpmpp_2m-karras-sigmas"] = dict(t, sampler="DPM++ 2M", scheduler="Karras", seed=1305, sigma_min=0.1,
                                         sigma_max=10.0, rho=5.0)
    out["euler-exponential-sigmas"] = dict(t, sampler="Euler", scheduler="Exponential", seed=1306,
                                           sigma_max=8.0)                                 # no rho for Exponential
    out["euler-discard"] = dict(t, sampler="Euler", seed=1307, always_discard_next_to_last_sigma=True)
    out["i2i-euler-churn"] = dict(t, sampler="Euler", seed=1308, init_image=INIT_IMAGE, denoising_strength=0.6,
                                  s_churn=0.5)                                            # t_enc 6: 7 steps, gamma 0.5/7
    return out


def tiling_cases():
    """A1111's Tiling (circular padding in every UNet and VAE conv; tools/a1111_tiling.py), 128 px and 128x96, 10 steps,
    seeds 1400-1402: txt2img Euler a and DPM++ 2M (the 96-pixel side takes the UNet's odd-size rule), img2img Euler
    (the VAE encoder's convs wrap too). image_float.npy is not kept (DROP)."""
    t = dict(BASE, steps=10, scheduler="Automatic", tiling=True)
    return {"tiling-euler_a": dict(t, sampler="Euler a", seed=1400),
            "tiling-dpmpp_2m-128x96": dict(t, sampler="DPM++ 2M", seed=1401, height=96),
            "i2i-tiling-euler": dict(t, sampler="Euler", seed=1402, init_image=INIT_IMAGE, denoising_strength=0.6)}


def seed_cases():
    """txt2img with A1111's variation seed (subseed slerp) and seed resize (noise made for another
    size, pasted centred into the first full-size draw; cropped when larger). Every case records
    all four options (0 = off, the oracle's defaults). image_float.npy is not kept (DROP)."""
    def seeds(sampler, seed, subseed=0, strength=0.0, from_w=0, from_h=0):
        return dict(BASE, sampler=sampler, scheduler="Automatic", seed=seed, subseed=subseed,
                    subseed_strength=strength, seed_resize_from_w=from_w, seed_resize_from_h=from_h)
    out = {}
    out["variation-euler_a"] = seeds("Euler a", 42, subseed=7, strength=0.3)
    out["variation-strong-euler"] = seeds("Euler", 42, subseed=9, strength=0.9)
    out["seed-resize-up-euler"] = seeds("Euler", 42, from_w=96, from_h=96)        # 12x12 noise in 16x16
    out["seed-resize-down-euler_a"] = seeds("Euler a", 43, from_w=192, from_h=160)  # 24x20 noise cropped to 16x16
    out["variation-resize-dpmpp_2m"] = seeds("DPM++ 2M", 44, subseed=5, strength=0.5,
                                             from_w=96, from_h=128)             # 12 wide x 16 high
    return out


# an AND part of more than 75 tokens (81: two chunks), so its conditioning is longer than the
# other part's and the uncond's: A1111 then calls the UNet on the parts in pairs and on the uncond alone
LONG_AND_PART = ("a very long description of a dog in a field, a scruffy brown and white terrier with floppy "
                 "ears running through tall golden grass under a pale blue sky, wildflowers everywhere, a wooden "
                 "fence, an old red barn far away, rolling hills, soft afternoon sunlight, long shadows, a few "
                 "white clouds, butterflies, a dirt path, dew on the grass, a gentle breeze, highly detailed, "
                 "sharp focus")


def small(prompt, sampler, seed, negative="lowres", steps=8, scheduler="Automatic", **extra):
    """The prompts / networks groups: 128 px (the smallest size the tiny model is stable at), 8 steps."""
    return dict(prompt=prompt, negative=negative, steps=steps, cfg=7, width=128, height=128,
                sampler=sampler, scheduler=scheduler, seed=seed, **extra)


def prompt_cases():
    """txt2img with A1111's prompt editing `[from:to:N]`, alternation `[a|b]` and AND (composable
    diffusion), 8 steps (so `0.5` means step 4). params.json["prompt_schedules"] has each AND part's
    weight and schedule and the negative prompt's schedule; cond_distinct_<j>.npy each distinct
    conditioning (texts in params.json["distinct_conds"]). image_float.npy is not kept (DROP)."""
    out = {}
    out["prompt-edit-step-euler_a"] = small("a photo of a [cat:dog:3], masterpiece", "Euler a", 100)
    out["prompt-edit-fraction-euler"] = small("a photo of a [cat:dog:0.5]", "Euler", 101)          # int(0.5*8) = 4
    out["prompt-edit-remove-euler"] = small("a photo of a [cat::4] in a garden", "Euler", 102)
    out["prompt-edit-add-euler"] = small("a photo of a [:dog:4] in a garden", "Euler", 103)
    out["prompt-alternation-euler"] = small("a photo of a [cat|dog|bird]", "Euler", 104)           # 8 entries, 3 texts
    out["prompt-edit-nested-dpmpp_2m"] = small("[a [cat|dog] photo:a painting:3], detailed", "DPM++ 2M", 105)
    out["prompt-edit-emphasis-euler"] = small("a photo of a ([cat:dog:3]:1.3), [blurry]", "Euler", 106)
    out["prompt-negative-edit-euler"] = small("a photo of a cat", "Euler", 107,
                                              negative="[blurry:bad anatomy:3], [lowres::5]")
    out["prompt-edit-heun"] = small("a photo of a [cat:dog:3]", "Heun", 108)   # 2 calls per step: "dog" from call 4
    out["prompt-pipe-verbatim-euler"] = small("a cat | a dog", "Euler", 109)    # a bare | : the prompt is used as is
    out["prompt-and-equal-euler"] = small("a cat AND a dog", "Euler", 110)       # one batch [cat, dog, uncond]
    out["prompt-and-weights-split-euler"] = small("a cat :1.2 AND " + LONG_AND_PART + ":0.6", "Euler", 111)
    out["prompt-and-three-split-euler_a"] = small("a red house AND " + LONG_AND_PART + " :0.5 AND a tree:0.8",
                                                  "Euler a", 112)                # pairs [1,2], [3], then uncond
    out["prompt-and-edit-dpmpp_2m"] = small("a [cat:dog:3] AND a red [house|tree] :0.6", "DPM++ 2M", 113,
                                            scheduler="Karras", negative="[blurry::2]")
    out["prompt-trailing-weight-euler"] = small("a photo of a cat:1.5", "Euler", 114)  # no AND: weight 1.5 still taken
    return out


def network_cases():
    """txt2img with extra networks from the committed Tests/Fixtures/networks (REF/make_networks.py
    on the tiny checkpoint): `<lora:...>` / `<lyco:...>` tags (removed from the positive prompt;
    they apply to the whole generation) and textual-inversion embeddings used by name.
    params.json["networks"] reports each network's multipliers and patched module counts,
    params.json["embeddings"] the loaded vectors. image_float.npy is not kept (DROP)."""
    lora = dict(lora_dir=LORA_DIR)
    out = {}
    out["net-lora-euler"] = small("a photo of a cat <lora:tiny_lora:0.8>", "Euler", 200, **lora)
    out["net-loha-euler"] = small("a photo of a cat <lora:tiny_loha:1>", "Euler", 201, **lora)
    out["net-lokr-dpmpp_2m"] = small("a photo of a cat <lora:tiny_lokr:1>", "DPM++ 2M", 202, **lora)
    out["net-lora-te-unet-dpmpp_2m"] = small("a photo of a cat <lora:tiny_lora:1:0.3>", "DPM++ 2M", 203, **lora)
    out["net-lora-named-euler"] = small("a photo of a cat <lora:tiny_lora:te=0.5:unet=1>", "Euler", 204, **lora)
    out["net-two-networks-euler"] = small("<lora:tiny_lora:0.6> a watercolor painting of a fox, <lora:tiny_loha:0.5>",
                                          "Euler", 205, **lora)
    # <lyco:...> is the same as <lora:...>; a tag in the negative prompt is not parsed (kept as text)
    out["net-lyco-euler"] = small("a photo of a cat <lyco:tiny_lokr:0.7:1.2>", "Euler", 206,
                                  negative="lowres <lora:tiny_loha:1>", **lora)
    out["net-tag-in-edit-euler"] = small("a photo of a [cat:dog <lora:tiny_lora:0.8>:3]", "Euler", 207, **lora)
    out["net-embedding-euler"] = small("a (tinyemb:1.2) photo of tinyemb3, a cat", "Euler", 208,
                                       negative="tinyemb, lowres", embeddings_dir=EMBEDDINGS_DIR)
    out["net-lora-embedding-euler_a"] = small("a photo of tinyemb3 <lora:tiny_lora:0.8>", "Euler a", 209,
                                              embeddings_dir=EMBEDDINGS_DIR, **lora)
    return out


def controlnet_cases():
    """One sd-webui-controlnet unit (the oracle's controlnet.py) with the committed tiny canny
    ControlNet, 128 px, "a red ball on a table" / "blurry". The two oracle cases
    (t2i_controlnet_canny_balanced / _cn_important), the "My prompt is more important" soft
    scales with Heun's two calls per step against guidance start / end, the "none" module with
    the three resize modes (a 3-colour map: INTER_NEAREST; a many-colour map enlarged: INTER_CUBIC),
    an RGBA input (composited on white), and img2img (sampling_steps = t_enc + 1).
    Canny maps are made at the target size (pixel perfect or processor_res 128): the oracle does
    not model the extension's thinning resize of binary maps. image_float.npy and control_hint.npy
    (= control_map.png / 255) are not kept (DROP); control_map.png and control_residual_00..12.npy are."""
    cn = dict(controlnet=CONTROLNET, control_image=CONTROL_IMAGE)

    def case(sampler, seed, steps=10, **extra):
        base = dict(prompt="a red ball on a table", negative="blurry", steps=steps, cfg=7, width=128, height=128,
                    sampler=sampler, scheduler="Automatic", seed=seed, **cn)
        return dict(base, **extra)
    out = {}
    # = oracle t2i_controlnet_canny_balanced: pixel perfect (processor_res 128), the 160x128 map centre-cropped
    out["cn-canny-balanced-euler_a"] = case("Euler a", 7, pixel_perfect=True)
    # = oracle t2i_controlnet_canny_cn_important: no control on the uncond row, soft scales, steps 1..6 of 10
    out["cn-canny-cn_important-dpmpp_2m"] = case("DPM++ 2M", 7, processor_res=128, canny_low=50, canny_high=150,
                                                 control_weight=0.8, guidance_start=0.1, guidance_end=0.6,
                                                 control_mode="ControlNet")
    # Heun, 8 steps: call 2k sees sampling_step k-1, call 2k+1 sees k; active for 0.2 <= step/8 <= 0.8
    out["cn-canny-prompt-heun"] = case("Heun", 300, steps=8, pixel_perfect=True, control_weight=1.2,
                                       guidance_start=0.2, guidance_end=0.8, control_mode="Prompt")
    # module none: the 160x128 image itself is the map (3 colours -> cv2 INTER_NEAREST)
    out["cn-none-resize_fill-euler"] = case("Euler", 301, control_module="none",
                                            control_resize_mode="Resize and Fill")    # 128x102 pasted on the border median
    out["cn-none-just_resize-euler"] = case("Euler", 302, control_module="none",
                                            control_resize_mode="Just Resize")        # 160x128 squeezed to 128x128
    # module none, a many-colour map enlarged: init-128.png (128x128) -> 160x128 with INTER_CUBIC
    out["cn-none-just_resize-cubic-euler"] = case("Euler", 303, control_module="none", control_image=INIT_IMAGE,
                                                  control_resize_mode="Just Resize", width=160)
    out["cn-canny-rgba-euler"] = case("Euler", 304, control_image=CONTROL_RGBA, pixel_perfect=True)
    out["cn-i2i-canny-euler"] = case("Euler", 305, pixel_perfect=True, init_image=INIT_IMAGE,
                                     denoising_strength=0.6)                          # t_enc 6: sampling_steps 7
    return out


def hires_cases():
    """txt2img with A1111's hires fix (the oracle's --enable-hr: run_hires / hires_target), first pass
    128 px (160x128 for the aspect case), 6-8 steps, second pass 4-6 steps: the six latent upscale
    modes (torch.nn.functional.interpolate of the first-pass latent to (to_y//8, to_x//8)) and the
    Lanczos / Nearest pixel upscalers (decode to uint8, PIL resize, VAE encode), hr_scale, one
    hr_resize side (the other from the aspect, integer //), both sides (scale to cover, then the
    latent cropped by the truncation), hr_second_pass_steps 0 (= steps) and explicit, prompt
    editing rescheduled for the hires steps, DDIM. The second pass is saved under the usual names
    (init_latent.npy = the upscaled, cropped latent; init_image.png = the upscaled image for pixel
    upscalers), the first pass as firstpass_*.npy / firstpass_image.png (KEEP_PREFIX, KEEP);
    params.json["hires"] has the target size, truncation, latent shape, second_pass_steps,
    schedule_steps, t_enc, per-pass UNet calls and the first pass's prompt schedules (also in
    index.json "hires"). image_float.npy and firstpass_image_float.npy are not kept (DROP)."""
    def case(prompt, sampler, seed, upscaler, strength, steps=8, hr_steps=0, negative="", width=128, height=128,
             scale=2.0, rx=0, ry=0):
        return dict(prompt=prompt, negative=negative, steps=steps, cfg=7, width=width, height=height,
                    sampler=sampler, scheduler="Automatic", seed=seed, enable_hr=True, hr_scale=scale,
                    hr_resize_x=rx, hr_resize_y=ry, hr_upscaler=upscaler, hr_second_pass_steps=hr_steps,
                    denoising_strength=strength)
    out = {}
    # = oracle t2i_hires_latent_euler with fewer steps: 192x192, hr_second_pass_steps 0 -> hr_steps = steps = 6,
    # schedule int(6 / 0.6) = 10 steps, t_enc 5
    out["hires-latent-euler"] = case("a photo of a cat", "Euler", 1, "Latent", 0.6, steps=6, scale=1.5)
    # = oracle t2i_hires_nearest_exact_euler_a: 256x256; [cat:dog:0.5] switches at int(0.5*8) = 4 in the first
    # pass and int(0.5*6) = 3 in the second; ancestral noise continues the fresh second-pass ImageRNG
    out["hires-latent-nearest-exact-euler_a"] = case("a [cat:dog:0.5] in a garden", "Euler a", 4,
                                                     "Latent (nearest-exact)", 0.55, hr_steps=6,
                                                     negative="blurry", scale=2)
    # = oracle t2i_hires_lanczos_resize_dpmpp2m: resize 256x192 from 128x128 covers as 256x256 (init_image.png),
    # truncate y = (256-192)//8 = 8 -> latent rows 4..27 kept: [1, 4, 24, 32], image 256x192
    out["hires-lanczos-resize-dpmpp_2m"] = case("a watercolor painting of a fox", "DPM++ 2M", 6, "Lanczos", 0.5,
                                                hr_steps=5, rx=256, ry=192)
    # 160x160: latent 16 -> 20 with the antialiased bicubic kernel (A = -0.5 when antialiasing)
    out["hires-latent-bicubic-aa-euler"] = case("a red house by a lake", "Euler", 410, "Latent (bicubic antialiased)",
                                                0.7, steps=6, hr_steps=4, scale=1.25)
    # first pass 160x128 (as nonsquare-euler); hr_resize_x 192 -> to_y = 192*128//160 = 153 -> latent
    # (153//8, 192//8) = (19, 24), image 192x152; Heun: 2 UNet calls per step but the last
    out["hires-latent-antialiased-heun"] = case("a bowl of fruit on a table", "Heun", 411, "Latent (antialiased)", 0.6,
                                                steps=6, hr_steps=4, width=160, height=128, rx=192)
    # pixel upscaler Nearest: 128 -> 256 with PIL NEAREST in one round, then VAE encode (posterior mean)
    out["hires-nearest-euler"] = case("a small boat on the sea", "Euler", 412, "Nearest", 0.6, steps=6, hr_steps=4,
                                      scale=2)
    # DDIM: the second pass's timesteps = ddim_timesteps(int(5 / 0.6) = 8)[:t_enc = 4]
    out["hires-latent-bicubic-ddim"] = case("a portrait of an old man, oil painting", "DDIM", 413, "Latent (bicubic)",
                                            0.6, steps=6, hr_steps=5, scale=1.5)
    return out


def inpaint2_cases():
    """More inpainting / img2img variants, 128 px, 10 steps, seeds 600-609. image_float.npy is not kept (DROP).
    Inpainting (the 4-channel model with the latent mask blend, oracle --mask):
      inpaint-ddim-original        DDIM (a timestep sampler: x blended with the clean init latent before every
                                   UNet call), masked content original, whole picture, blur 4
      inpaint-plms-nothing         PLMS, masked content latent nothing (fill 3: VAE input = masking.fill, then
                                   init_latent * mask)
      inpaint-onlymasked-pad8-euler_a  only masked, padding 8, processing 128x96: the padded box (0, 0, 96, 100)
                                   is grown towards 4:3 and clipped to (0, 0, 128, 100), cropped and resized with
                                   resize-and-fill to 128x96 (latent 16x12); the result is pasted back at the
                                   init size 128x128 with crop-and-resize; Euler a
      inpaint-rgba-mask-dpmpp_2m   an RGBA mask with transparency (mask-rgba-128.png): A1111 takes its alpha
                                   channel (a soft edge, thresholded > 128 by mask_round), not its colours (the
                                   RGB is 255 - alpha, so convert('L') would give the inverse); DPM++ 2M
      inpaint-blur2x6-noround-euler  mask_blur_x 2, mask_blur_y 6 (no "Mask blur" infotext field), mask_round off:
                                   the latent mask keeps its fractional (bicubic) values
      inpaint-init-160x120         a 160x120 init image and mask (mask-160x120.png) at 128x128, whole picture:
                                   the mask is binarised / blurred at 160x120, both are LANCZOS-resized to
                                   128x128 (just resize), so overlay and output are 128x128
    img2img (no mask) from the 160x120 init, 128x128, Euler, strength 0.6, and the noise multiplier; these use
    A1111 behaviour the oracle has no option for, added by a1111_img2img_extras (args resize_mode /
    initial_noise_multiplier, kept out of the oracle's argv):
      i2i-resize-crop / i2i-resize-fill  resize_mode 1 (crop and resize) / 2 (resize and fill): the init image
                                   goes through the oracle's inpaint.resize_image(mode, ...) (A1111
                                   images.resize_image, no upscaler) into a 128x128 temp PNG given to the oracle
                                   as --init-image (so it does no resize of its own); init_image.png is that
                                   resized image, args init_image the original 160x120 file
      i2i-resize-latent            resize_mode 3 (just resize, latent upscale): the image is VAE-encoded at its
                                   own size (latent 15x20) and the scaled latent interpolated bilinearly
                                   (align_corners False, no antialias) to 16x16; init_image.png is the 160x120
                                   image the VAE saw, init_latent.npy the interpolated latent
      i2i-noise-multiplier         initial_noise_multiplier 0.9 on init-128.png, Euler a: the first image-RNG
                                   draw times 0.9 (float32) before sample_img2img; ancestral draws unscaled;
                                   noise.npy is the raw draw; infotext gains "Noise multiplier: 0.9"."""
    def case(sampler, seed, strength, init=INIT_IMAGE, **extra):
        return dict(BASE, steps=10, sampler=sampler, scheduler="Automatic", seed=seed, init_image=init,
                    denoising_strength=strength, **extra)
    inp = dict(mask=MASK, mask_blur=4, inpainting_fill=1, inpaint_full_res=False, inpaint_full_res_padding=32,
               inpainting_mask_invert=False)
    out = {}
    out["inpaint-ddim-original"] = case("DDIM", 600, 0.75, **inp)                        # t_enc 7: timesteps[:7]
    out["inpaint-plms-nothing"] = case("PLMS", 601, 0.8, **dict(inp, inpainting_fill=3))
    out["inpaint-onlymasked-pad8-euler_a"] = case("Euler a", 602, 0.75, **dict(inp, inpaint_full_res=True,
                                                                                inpaint_full_res_padding=8,
                                                                                height=96))
    out["inpaint-rgba-mask-dpmpp_2m"] = case("DPM++ 2M", 603, 0.7, **dict(inp, mask=MASK_RGBA))
    out["inpaint-blur2x6-noround-euler"] = case("Euler", 604, 0.75, **dict(inp, mask_blur_x=2, mask_blur_y=6,
                                                                            no_mask_round=True))
    out["inpaint-init-160x120"] = case("Euler", 605, 0.75, init=INIT_160x120, **dict(inp, mask=MASK_160x120))
    out["i2i-resize-crop"] = case("Euler", 606, 0.6, init=INIT_160x120, resize_mode=1)
    out["i2i-resize-fill"] = case("Euler", 607, 0.6, init=INIT_160x120, resize_mode=2)
    out["i2i-resize-latent"] = case("Euler", 608, 0.6, init=INIT_160x120, resize_mode=3)
    out["i2i-noise-multiplier"] = case("Euler a", 609, 0.75, initial_noise_multiplier=0.9)
    return out


def vae_cases():
    """A separate VAE file (A1111's "SD VAE" setting, models/VAE/*) with the committed tiny checkpoint, 128 px,
    10 steps, the usual prompt, seeds 700-702; image_float.npy is not kept (DROP). The VAE files are
    Tests/Fixtures/vae/tiny-vae-ft.{safetensors,pt} (tools/make_vae_fixtures.py: the VAE of the oracle's tiny
    checkpoint made with seed 1; the .pt holds the same tensors plus loss.* / model_ema.* entries A1111 drops).
    The oracle has no VAE option, so VaeFileCheckpoints runs it on a temporary merged checkpoint (see there);
    args vae (relative to the repository root) is kept out of the oracle's argv, args / params get vae_sha256:
      vae-file-euler         txt2img, Euler, the .safetensors VAE (decoder only)
      vae-file-i2i-euler_a   img2img from init-128.png, strength 0.6, Euler a: the file's encoder too
      vae-file-pt-dpmpp_2m   txt2img, DPM++ 2M, the .pt VAE (its merged checkpoint is byte-identical to the
                             .safetensors one: the same pictures as with that file; only the infotext's
                             VAE hash / VAE differ)"""
    def case(sampler, seed, vae, **extra):
        return dict(BASE, steps=10, sampler=sampler, scheduler="Automatic", seed=seed, vae=vae, **extra)
    out = {}
    out["vae-file-euler"] = case("Euler", 700, VAE_FT)
    out["vae-file-i2i-euler_a"] = case("Euler a", 701, VAE_FT, init_image=INIT_IMAGE, denoising_strength=0.6)
    out["vae-file-pt-dpmpp_2m"] = case("DPM++ 2M", 702, VAE_FT_PT)
    return out


class VaeFileCheckpoints:
    """A1111 1.10 with a separate VAE file (modules/sd_vae.py): sd_models.read_state_dict(file) (safetensors, or
    torch.load + get_state_dict_from_checkpoint, which unwraps "state_dict"), load_vae_dict drops keys whose first
    4 characters are "loss" and model_ema.decay / model_ema.num_updates, then _load_vae_dict does
    model.first_stage_model.load_state_dict(dict) (strict). The oracle has no VAE option, so for each VAE file
    this writes TMP/<n>/tiny-sd15.safetensors = the tiny checkpoint with its first_stage_model.* tensors replaced
    by the file's (same key set and shapes required, as strict loading does; every other tensor, the safetensors
    metadata and the .yaml / .json sidecars copied unchanged; the merged file is read back and compared tensor by
    tensor) and runs the oracle's own loader and pipeline on it (one pipeline per distinct merged file). The name
    tiny-sd15 keeps "Model: tiny-sd15". finish() then puts back what A1111 reports for the ORIGINAL checkpoint plus
    the VAE file: params.json checkpoint_sha256 = the original's (the oracle wrote the merged file's, which is
    checked first), the infotext's "Model hash" likewise, and "VAE hash: <sha256[:10] of the VAE file>, VAE: <its
    file name>" inserted right after "Model: ..." (processing.create_infotext; opts add_vae_hash_to_info /
    add_vae_name_to_info default True), in params.json and image.png's text chunk; params.json gains vae (path
    relative to the repository root), vae_sha256, vae_name, vae_hash and vae_merged_checkpoint_sha256."""

    def __init__(self, R, ckpt, tokenizer):
        self.R, self.ckpt, self.tokenizer = R, ckpt, tokenizer
        self.tmp = None
        self.by_vae = {}    # vae path -> entry
        self.pipes = {}     # merged sha256 -> pipeline

    @staticmethod
    def a1111_vae_dict(path):
        import torch
        from safetensors.torch import load_file
        if path.endswith(".safetensors"):
            sd = load_file(path)
        else:  # torch.load(weights_only=True) stands in for modules/safe.py's RestrictedUnpickler
            sd = torch.load(path, map_location="cpu", weights_only=True)
            sd = sd.pop("state_dict", sd)
            sd.pop("state_dict", None)
        return {k: v for k, v in sd.items() if k[0:4] != "loss" and k not in ("model_ema.decay", "model_ema.num_updates")}

    def get(self, vae):
        if vae in self.by_vae:
            return self.by_vae[vae]
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        if self.tmp is None:
            self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(REPO, vae)
        prefix = "first_stage_model."
        vd = self.a1111_vae_dict(path)
        base = load_file(self.ckpt)
        with safe_open(self.ckpt, "pt") as f:
            metadata = f.metadata()
        want = {k[len(prefix):]: v for k, v in base.items() if k.startswith(prefix)}
        if set(vd) != set(want):
            sys.exit(f"{vae}: keys differ from the checkpoint's first_stage_model: "
                     f"missing {sorted(set(want) - set(vd))[:3]}, unexpected {sorted(set(vd) - set(want))[:3]}")
        for k, v in vd.items():
            if v.shape != want[k].shape:
                sys.exit(f"{vae}: size mismatch for {k}: {tuple(v.shape)} vs {tuple(want[k].shape)}")
        # load_state_dict copies into the model's parameters (their dtype): the checkpoint tensor's dtype
        merged = dict(base)
        merged.update({prefix + k: v.to(want[k].dtype) for k, v in vd.items()})
        d = os.path.join(self.tmp.name, str(len(self.by_vae)))
        os.makedirs(d)
        stem = os.path.splitext(os.path.basename(self.ckpt))[0]
        out = os.path.join(d, stem + ".safetensors")
        save_file(merged, out, metadata=metadata)
        for ext in (".yaml", ".json"):  # the config sidecars the oracle (and A1111) read next to a checkpoint
            shutil.copyfile(os.path.splitext(self.ckpt)[0] + ext, os.path.join(d, stem + ext))
        back = load_file(out)
        if set(back) != set(base):
            sys.exit(f"{out}: key set differs from the checkpoint's")
        for k, v in back.items():
            ref = merged[k]
            if v.dtype != ref.dtype or v.shape != ref.shape or not torch.equal(v, ref):
                sys.exit(f"{out}: {k} does not read back")
        n_changed = sum(1 for k in want if not torch.equal(base[prefix + k], back[prefix + k]))
        merged_sha = sha256(out)
        if merged_sha not in self.pipes:
            self.pipes[merged_sha] = self.R.load_pipeline(out, self.tokenizer)
        entry = dict(vae=vae, path=out, vae_sha256=sha256(path), merged_sha256=merged_sha, pipe=self.pipes[merged_sha],
                     vae_tensors=len(vd), vae_tensors_changed=n_changed)
        print(f"  {vae}: {len(vd)} VAE tensors ({n_changed} differ from the checkpoint's) -> merged checkpoint "
              f"{merged_sha[:16]}", flush=True)
        self.by_vae[vae] = entry
        return entry

    def finish(self, entry, params, dest):
        if params["checkpoint_sha256"] != entry["merged_sha256"]:
            sys.exit(f"the oracle did not run on the merged checkpoint: {params['checkpoint_sha256']}")
        name = os.path.basename(entry["vae"])
        stem = os.path.splitext(params["checkpoint"])[0]
        lines = params["infotext"].split("\n")
        fields = lines[-1].split(", ")
        old_hash = f"Model hash: {entry['merged_sha256'][:10]}"
        i = fields.index(f"Model: {stem}")
        if fields[i - 1] != old_hash:
            sys.exit(f"unexpected infotext: {params['infotext']!r}")
        fields[i - 1] = f"Model hash: {CKPT_SHA256[:10]}"
        fields[i + 1:i + 1] = [f"VAE hash: {entry['vae_sha256'][:10]}", f"VAE: {name}"]
        lines[-1] = ", ".join(fields)
        params["infotext"] = "\n".join(lines)
        params["checkpoint_sha256"] = CKPT_SHA256
        params.update(vae=entry["vae"], vae_sha256=entry["vae_sha256"], vae_name=name, vae_hash=entry["vae_sha256"][:10],
                      vae_merged_checkpoint_sha256=entry["merged_sha256"])
        set_png_parameters(os.path.join(dest, "image.png"), params["infotext"])

    def close(self):
        self.pipes.clear()
        self.by_vae.clear()
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None


def make_inpaint2_images():
    """The inpaint2 group's extra inputs, from the committed init-128.png / mask-128.png (Pillow only,
    deterministic): init-160x120.png (init-128 LANCZOS-resized to 160x120, RGB), mask-160x120.png
    (mask-128 NEAREST-resized, L, still binary) and mask-rgba-128.png (RGBA: alpha = mask-128 through
    ImageFilter.GaussianBlur(2), a soft edge with every level in between; R = G = 255 - alpha, B = 96)."""
    from PIL import Image, ImageFilter, ImageOps
    init = Image.open(os.path.join(REPO, INIT_IMAGE)).convert("RGB")
    mask = Image.open(os.path.join(REPO, MASK)).convert("L")
    init.resize((160, 120), resample=Image.Resampling.LANCZOS).save(os.path.join(REPO, INIT_160x120))
    mask.resize((160, 120), resample=Image.Resampling.NEAREST).save(os.path.join(REPO, MASK_160x120))
    alpha = mask.filter(ImageFilter.GaussianBlur(2))
    inv = ImageOps.invert(alpha)
    Image.merge("RGBA", (inv, inv, Image.new("L", alpha.size, 96), alpha)).save(os.path.join(REPO, MASK_RGBA))


class A1111Img2ImgExtras:
    """A1111 1.10 img2img behaviour the oracle has no option for, added around reference.run for one case
    (args resize_mode, initial_noise_multiplier; processing.py StableDiffusionProcessingImg2Img.init / .sample):
      resize_mode 1 / 2  images.resize_image(mode, flatten(init), W, H): done here with the oracle's
                         inpaint.resize_image into TMP/_resized_init.png, the oracle's --init-image (W x H, so
                         it does not resize again); params.json init_image names the original file
      resize_mode 3      the init image is not resized; init_latent (posterior mean * scale factor) is
                         torch.nn.functional.interpolate(z, size=(H // 8, W // 8), mode="bilinear"):
                         reference.load_init_image and reference.encode_image are patched while the case runs
      initial_noise_multiplier m != 1   x = rng.next(); x *= m (float32) before sample_img2img: the first draw
                         of reference.TorchImageRNG is scaled (patched class); noise.npy is then rewritten with
                         the raw draw (what the engine dumps as "noise"); the infotext (params.json and the
                         image.png text chunk) gains "Noise multiplier: m" at the end (extra_generation_params)
    Resize modes 1-3 are not combined with a mask here (the oracle resizes the mask with mode 0)."""

    def __init__(self, R, opts, tmp):
        self.R, self.opts, self.tmp = R, opts, tmp
        self.mode = int(opts.get("resize_mode", 0))
        self.mult = float(opts.get("initial_noise_multiplier", 1.0))
        self.oracle = {k: v for k, v in opts.items() if k not in ORACLE_EXTRA_ARGS}
        self.raw_noise = []
        self.encoded_shape = None
        if self.mode and opts.get("mask"):
            sys.exit("resize modes 1-3 with a mask are not modelled")
        if self.mult != 1.0 and (opts.get("randn_source", "CPU") != "CPU" or opts.get("inpainting_fill") == 2):
            sys.exit("initial_noise_multiplier: CPU noise source and no latent-noise fill only")
        if self.mode in (1, 2):
            import inpaint as IP
            from PIL import Image
            img = R.flatten_image(Image.open(os.path.join(REPO, opts["init_image"])))
            path = os.path.join(tmp, "_resized_init.png")
            IP.resize_image(self.mode, img, opts["width"], opts["height"]).save(path)
            self.oracle["init_image"] = path  # absolute: to_argv's os.path.join(REPO, path) keeps it
        elif self.mode not in (0, 3):
            sys.exit(f"unknown resize_mode {self.mode}")

    @contextlib.contextmanager
    def patched(self):
        R = self.R
        saved = (R.load_init_image, R.encode_image, R.TorchImageRNG)
        if self.mode == 3:
            import torch
            from PIL import Image
            h8, w8 = self.opts["height"] // 8, self.opts["width"] // 8
            load, encode = saved[0], saved[1]

            def load_unresized(path, width, height):
                return R.flatten_image(Image.open(path))

            def encode_and_interpolate(*args, **kwargs):
                z = encode(*args, **kwargs)
                self.encoded_shape = list(z.shape)
                return torch.nn.functional.interpolate(z, size=(h8, w8), mode="bilinear")
            R.load_init_image, R.encode_image = load_unresized, encode_and_interpolate
        if self.mult != 1.0:
            base, mult, raws = saved[2], self.mult, self.raw_noise

            class ScaledFirstDraw(base):
                def first(self):
                    raw = base.first(self)
                    raws.append(raw)
                    return raw * mult  # float32, as A1111's x *= initial_noise_multiplier
            R.TorchImageRNG = ScaledFirstDraw
        try:
            yield
        finally:
            R.load_init_image, R.encode_image, R.TorchImageRNG = saved

    def after_float32_run(self):
        """Before the files are copied: noise.npy = the raw first draw."""
        import numpy as np
        if self.mult != 1.0:
            np.save(os.path.join(self.tmp, "noise.npy"), self.raw_noise[0].numpy().astype(np.float32))

    def finish(self, params, dest):
        """params.json (and image.png's text chunk) of the kept case."""
        if self.mode:
            params["init_image"] = os.path.basename(self.opts["init_image"])
            params["resize_mode"] = self.mode
            if self.mode == 3:
                params["latent_upscale"] = {"encoded_shape": self.encoded_shape,
                                            "latent_shape": [1, 4, self.opts["height"] // 8, self.opts["width"] // 8],
                                            "mode": "bilinear", "align_corners": False, "antialias": False}
        if self.mult != 1.0:
            params["initial_noise_multiplier"] = self.mult
            params["infotext"] += f", Noise multiplier: {self.mult}"
            set_png_parameters(os.path.join(dest, "image.png"), params["infotext"])


GROUPS = {"txt2img": cases, "img2img": img2img_cases, "samplers": sampler_cases, "seeds": seed_cases,
          "prompts": prompt_cases, "networks": network_cases, "controlnet": controlnet_cases, "hires": hires_cases,
          "samplers2": samplers2_cases, "inpaint2": inpaint2_cases,
          "vae": vae_cases, "img2img2": img2img2_cases, "sde": sde_cases, "unipc": unipc_cases,
          "options": options_cases, "tiling": tiling_cases}  # appended: index.json keeps the older cases' order
# files of KEEP not kept for a group's cases (size)
DROP = {"samplers": ("image_float.npy",), "samplers2": ("image_float.npy",), "seeds": ("image_float.npy",),
        "prompts": ("image_float.npy",), "networks": ("image_float.npy",),
        # control_hint.npy is control_map.png / 255 exactly: the PNG is kept instead
        "controlnet": ("image_float.npy", "control_hint.npy"),
        # firstpass_image_float.npy: the first pass's decoded float image (firstpass_image.png is kept)
        "hires": ("image_float.npy", "firstpass_image_float.npy"), "inpaint2": ("image_float.npy",),
        "vae": ("image_float.npy",), "img2img2": ("image_float.npy",), "sde": ("image_float.npy",),
        # ddim_alphas{,_prev}.npy: DDIM's tables for A1111's timesteps, which UniPC does not use
        "unipc": ("image_float.npy", "ddim_alphas.npy", "ddim_alphas_prev.npy"),
        "options": ("image_float.npy",), "tiling": ("image_float.npy",)}
# further files kept for a group's cases: every "<prefix>*.npy" the oracle wrote (cond_distinct_<j>.npy:
# one per distinct conditioning, in the order of params.json["distinct_conds"]; control_residual_NN.npy:
# the first active ControlNet call's 13 weighted residuals; firstpass_*.npy: the hires first pass's
# noise, sigmas / timesteps, first_unet_eps, first_denoised, steps, sampler_noise, latents)
KEEP_PREFIX = {"prompts": ("cond_distinct_",), "networks": ("cond_distinct_",), "controlnet": ("control_residual_",),
               "hires": ("cond_distinct_", "firstpass_")}


def all_cases():
    out = {}
    for make in GROUPS.values():
        out.update(make())
    return out


# (file name, source, seed, shape "C,H,W" or "N", number of successive draws on one generator)
NOISE = (
    ("cpu_42_4x64x64_3draws.npy", "CPU", 42, "4,64,64", 3),
    ("cpu_1_4x65x65_1draw.npy", "CPU", 1, "4,65,65", 1),
    ("cpu_0_17_2draws.npy", "CPU", 0, "17", 2),      # numel 17: the 16-block tail path
    ("cpu_0_7_2draws.npy", "CPU", 0, "7", 2),        # numel < 16: scalar path, draw 1 uses the cached normal
    ("nv_42_4x64x64_2draws.npy", "NV", 42, "4,64,64", 2),
    ("nv_9223372036854775807_4x8x8.npy", "NV", 9223372036854775807, "4,8,8", 1),
)




def float64_floor_hires(R, a, pipe, out):
    """reference.float64_floor for a hires-fix case: the same keys (second pass / final output) from
    one float64 run, written to params.json["float32_vs_float64"] as float64_floor does, plus
    firstpass_{first_denoised,latents}_{rel_l2,max_abs}, firstpass_image_uint8_max_abs,
    init_latent_{rel_l2,max_abs} (the upscaled, cropped latent) and, for pixel upscalers,
    init_image_uint8_max_abs (the upscaled first-pass image)."""
    import numpy as np
    import torch
    out64 = R.run(a, pipe, dtype=torch.float64, save_files=False)
    floor = {}

    def dist(name, x, y):
        floor[name + "_rel_l2"] = R.rel_l2(x, y)
        floor[name + "_max_abs"] = float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())

    def u8(x, y):
        return int(np.abs(np.asarray(x).astype(int) - np.asarray(y).astype(int)).max())

    for k in ("cond", "uncond", "first_unet_eps", "first_denoised", "latents", "image_float"):  # = float64_floor
        dist(k, out[k], out64[k])
    floor["image_uint8_max_abs"] = u8(out["image"], out64["image"])
    fp, fp64 = out["firstpass"], out64["firstpass"]
    for k in ("first_denoised", "latents"):
        dist("firstpass_" + k, fp[k], fp64[k])
    floor["firstpass_image_uint8_max_abs"] = u8(fp["image"], fp64["image"])
    dist("init_latent", out["init_latent"], out64["init_latent"])
    if out.get("init_image") is not None:
        floor["init_image_uint8_max_abs"] = u8(out["init_image"], out64["init_image"])
    p = os.path.join(a.out, "params.json")
    with open(p) as f:
        params = json.load(f)
    params["float32_vs_float64"] = floor
    with open(p, "w") as f:
        json.dump(params, f, indent=2)
    return floor


@contextlib.contextmanager
def dpm_fast_f32_grid(R):
    """For the float64 twin only: DPM fast gets sigma_min / sigma_max as Python floats. The oracle's
    sample_dpm_fast builds its t grid with torch.linspace (default dtype float32) but t_end with the
    dtype of sigma_min; img2img passes sigma_sched[-2] / [0] as tensors, so in the float64 twin t_end
    is float64 while ts[-1] is float32, sigma(ts[-1])**2 - sigma(t_end)**2 comes out about -1e-11 on
    the last step and its noise scale is sqrt(negative) = NaN (the float32 run, the golden, has
    ts[-1] == t_end and scale 0). Python floats make the twin's t grid float32 throughout, as it
    already is for txt2img (model sigmas passed with .item()); the float32 run is not touched."""
    SM = R.SM
    entry = SM.SAMPLERS["DPM fast"]
    fast = entry[1]

    def wrapped(model, x, sigma_min, sigma_max, n, c):
        return fast(model, x, float(sigma_min), float(sigma_max), n, c)

    SM.SAMPLERS["DPM fast"] = (entry[0], wrapped) + tuple(entry[2:])
    try:
        yield
    finally:
        SM.SAMPLERS["DPM fast"] = entry


def make_goldens(args):
    sys.path.insert(0, os.path.abspath(args.ref))
    import reference as R  # the oracle, imported from --ref
    import a1111_unet  # A1111's UNet rule for sizes not multiples of 64 (tools/a1111_unet.py), before any UNet runs
    a1111_unet.apply()
    import a1111_unipc  # A1111's UniPC sampler (tools/a1111_unipc.py): SAMPLERS["UniPC"], reference.run / sample_ddim
    a1111_unipc.apply(R)
    import a1111_sampler_options  # A1111's sampler options (tools/a1111_sampler_options.py): reference.py flags, run /
    a1111_sampler_options.apply(R)  # get_sigmas / the samplers taking them; nothing changes for a case without options
    import a1111_tiling  # A1111's Tiling (tools/a1111_tiling.py): --tiling, circular conv padding for the run
    a1111_tiling.apply(R)

    got = sha256(args.ckpt)
    if got != CKPT_SHA256:
        msg = f"checkpoint sha256 {got} != expected {CKPT_SHA256}"
        if not args.allow_other_checkpoint:
            sys.exit(msg + " (rebuild it, or pass --allow-other-checkpoint and update CKPT_SHA256)")
        print("warning:", msg)
    golden = os.path.join(FIXTURES, "golden")
    os.makedirs(golden, exist_ok=True)
    index_path = os.path.join(golden, "index.json")
    index = {}
    if os.path.exists(index_path):  # keep the entries of cases not rerun (--only)
        with open(index_path) as f:
            index = json.load(f).get("cases", {})
    pipe = R.load_pipeline(args.ckpt, args.tokenizer)
    every = all_cases()
    if args.only:
        unknown = sorted(set(args.only) - set(every))
        if unknown:
            sys.exit(f"unknown case(s): {' '.join(unknown)}")
    selected = GROUPS[args.group]() if args.group != "all" else every
    drop = {name: DROP.get(g, ()) for g, make in GROUPS.items() for name in make()}
    keep_prefix = {name: KEEP_PREFIX.get(g, ()) for g, make in GROUPS.items() for name in make()}
    if any(name in inpaint2_cases() and (not args.only or name in args.only) for name in selected):
        make_inpaint2_images()
    vae_files = VaeFileCheckpoints(R, args.ckpt, args.tokenizer)  # separate VAE files (args vae)
    for name, opts in selected.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            extras = A1111Img2ImgExtras(R, opts, tmp)  # resize modes 1-3, noise multiplier (else a no-op)
            vae = vae_files.get(opts["vae"]) if opts.get("vae") else None  # a merged checkpoint (VaeFileCheckpoints)
            case_ckpt, case_pipe = (vae["path"], vae["pipe"]) if vae else (args.ckpt, pipe)
            argv = to_argv(extras.oracle, case_ckpt, args.tokenizer, tmp, args.threads, PATH_ARGS)
            a = R.build_parser().parse_args(argv)
            with extras.patched():
                res = R.run(a, case_pipe)
                extras.after_float32_run()
                with dpm_fast_f32_grid(R):  # the float64 twin only (see there)
                    floor = float64_floor_hires(R, a, case_pipe, res) if "firstpass" in res else \
                        R.float64_floor(a, case_pipe, res)
            case_pipe.pop("_as_torch.float64", None)
            dest = os.path.join(golden, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.makedirs(dest)
            for fn in KEEP:
                if fn in drop[name]:
                    continue
                if os.path.exists(os.path.join(tmp, fn)):
                    shutil.copyfile(os.path.join(tmp, fn), os.path.join(dest, fn))
            for fn in sorted(os.listdir(tmp)):
                if fn.endswith(".npy") and fn.startswith(keep_prefix[name]) and fn not in drop[name]:
                    shutil.copyfile(os.path.join(tmp, fn), os.path.join(dest, fn))
        with open(os.path.join(dest, "params.json")) as f:
            params = json.load(f)
        extras.finish(params, dest)
        if vae:
            vae_files.finish(vae, params, dest)
            opts = dict(opts, vae_sha256=vae["vae_sha256"])
        params["golden_case"] = name
        params["golden_args"] = opts
        with open(os.path.join(dest, "params.json"), "w") as f:
            json.dump(params, f, indent=2)
        with open(os.path.join(dest, "tokens.json")) as f:
            toks = json.load(f)
        index[name] = {"args": opts, "sampler": params["sampler"], "scheduler": params["scheduler"],
                       "unet_calls": params["unet_calls"],
                       "cond_chunks": len(toks["cond"]["chunks"]), "uncond_chunks": len(toks["uncond"]["chunks"]),
                       "files": sorted(os.listdir(dest)), "float32_vs_float64": floor}
        if params.get("t_enc") is not None:  # img2img only (txt2img entries keep their old keys)
            index[name]["t_enc"] = params["t_enc"]
        if params.get("unipc"):  # UniPC: its continuous time grid, the UNet's float timesteps, the order per update
            u = params["unipc"]
            index[name]["unipc"] = {"t": u["t"], "model_input_t": u["model_input_t"], "orders": u["orders"]}
        if params.get("sampler_options"):  # A1111 sampler options: what the sampler got, what applied, the infotext
            so = params["sampler_options"]
            index[name]["sampler_options"] = {k: so[k] for k in ("sampler_kwargs", "applied", "ignored", "infotext")}
        if params.get("hires"):  # hires fix: sizes, truncation, step counts (not the first pass's schedules)
            index[name]["hires"] = {k: v for k, v in params["hires"].items() if k != "firstpass_prompt_schedules"}
        print(f"{name:24} {params['sampler']:9} {params['scheduler']:11} {params['unet_calls']:3} UNet calls "
              f"{time.time() - t0:5.1f}s  f32-vs-f64 latents rel L2 {floor['latents_rel_l2']:.2e}", flush=True)
    vae_files.close()
    # this script's cases in its order, then the cases other scripts own (make_inpainting_goldens.py,
    # make_sd2_goldens.py: they carry their own checkpoint in args `ckpt`), kept as they are
    index = {**{k: index[k] for k in every if k in index}, **{k: v for k, v in index.items() if k not in every}}
    meta = {"checkpoint": "Tests/Fixtures/models/tiny-sd15.safetensors", "checkpoint_sha256": CKPT_SHA256,
            "threads": args.threads, "made_by": "tools/make_goldens.py (oracle reference.py --f64)"}
    with open(index_path, "w") as f:
        json.dump({"meta": meta, "cases": index}, f, indent=2)


def make_noise(args):
    noise_py = os.path.join(os.path.abspath(args.ref), "noise.py")
    d = os.path.join(FIXTURES, "noise")
    os.makedirs(d, exist_ok=True)
    for fn, src, seed, shape, n in NOISE:
        cmd = [sys.executable, noise_py, "dump", src, str(seed), shape, str(n), os.path.join(d, fn)]
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: reference.py, noise.py, ...)")
    ap.add_argument("--tokenizer", help="clip-tokenizer dir made by REF/vocab.py (needed for goldens)")
    ap.add_argument("--ckpt", default=CKPT)
    ap.add_argument("--allow-other-checkpoint", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="golden case names (default: all)")
    ap.add_argument("--group", choices=("all",) + tuple(GROUPS), default="all",
                    help="txt2img: the original 18 cases; img2img: the img2img / inpainting cases; "
                         "samplers: the other samplers and schedules; samplers2: PLMS, DDIM CFG++, LCM, Restart, DPM fast; "
                         "seeds: variation seed and seed resize; "
                         "prompts: prompt editing / alternation / AND; networks: LoRA / LyCORIS / embeddings; "
                         "controlnet: one ControlNet unit; hires: the hires fix; "
                         "inpaint2: more inpainting / img2img variants, resize modes 1-3, noise multiplier; "
                         "vae: a separate VAE file; img2img2: img2img on Heun, DPM2, DPM2 a, LMS, DPM++ 2S a, "
                         "LCM, DDIM CFG++; sde: the Brownian-tree SDE samplers, DPM adaptive; unipc: UniPC; "
                         "options: the sampler options s_churn / s_tmin / s_tmax / s_noise / sigma_min / sigma_max / "
                         "rho / always_discard_next_to_last_sigma; tiling: A1111's Tiling (circular padding) "
                         "(default: all)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--noise-only", action="store_true")
    g.add_argument("--no-noise", action="store_true")
    args = ap.parse_args()
    if not args.no_noise:
        make_noise(args)
    if not args.noise_only:
        if not args.tokenizer:
            ap.error("--tokenizer is required for the goldens")
        make_goldens(args)


if __name__ == "__main__":
    main()
