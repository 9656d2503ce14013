#!/usr/bin/env python3
"""A tiny random SD 1.x *inpainting* checkpoint (9-channel UNet, LDM v1-inpainting-inference.yaml shape).

    REF_VENV/bin/python tools/make_inpainting_model.py --ref REF \
        --out Tests/Fixtures/models/tiny-sd15-inpainting.safetensors

The oracle (REF/make_checkpoint.py) makes the tiny SD 1.5 checkpoint; this is the same recipe with
one change: the UNet's in_channels is 9 (4 latent + 1 mask + 4 masked-image latent, as
sd-v1-5-inpainting.ckpt), so model.diffusion_model.input_blocks.0.0.weight is [32, 9, 3, 3].
Everything else is identical to REF/make_checkpoint.py --size tiny --seed 0 --fp16:
  * sizes: sd_ldm.SIZES["tiny"] (UNet 32/64/64/64, 8 heads, context 32; CLIP 2 layers x 32;
    VAE 32/64/64/64), in_channels 9;
  * init: torch.manual_seed(seed) then sd_ldm.build_modules (text encoder, UNet, VAE in that order,
    PyTorch default init), then make_checkpoint.randomize_trivial_params (every all-ones tensor ->
    1 + 0.1 N(0,1), every all-zeros one -> 0.1 N(0,1), generator seed + 1000003; text final LayerNorm
    bias + 0.1). The text encoder is built first from the same seed, so with seed 0 it is
    bit-identical to tiny-sd15's; the UNet and VAE differ (conv_in draws more numbers);
  * layout: sd_ldm.to_ldm_state_dict (LDM names, fp16 weights, float32 DDPM buffers, model_ema.*),
    safetensors metadata {"format": "pt"}.
Writes next to PATH:
  PATH.safetensors  the checkpoint
  PATH.yaml         the LDM config A1111 reads next to a checkpoint, in the shape of A1111's
                    configs/v1-inpainting-inference.yaml (target LatentInpaintDiffusion,
                    conditioning_key hybrid, finetune_keys null, the scheduler_config block,
                    unet in_channels 9) with the tiny sizes
  PATH.json         the config sidecar, as tiny-sd15.json (format atelier-reference-sidecar/1;
                    config.unet.in_channels 9, plus "conditioning_key": "hybrid"), sha256, probe stats
Checks (unless --no-verify): the oracle's make_checkpoint.verify (our inverse mapping into fresh
modules; diffusers' convert_ldm_unet/vae/clip_checkpoint with configs derived from the yaml), every
tensor bit-identical; diffusers' UNet2DConditionModel.from_single_file with the written .yaml
(in_channels 9, bit-identical); and the probe refuses a model whose output ignores the 5 extra
input channels. Deterministic for torch 2.15 (sha256 in the .json).
"""
import argparse
import copy
import gc
import json
import os
import sys
import time


def inpainting_yaml(cfg):
    """A1111 configs/v1-inpainting-inference.yaml with cfg's sizes (key order as that file)."""
    u, v = cfg["unet"], cfg["vae"]
    return {
        "model": {
            "base_learning_rate": 7.5e-05,
            "target": "ldm.models.diffusion.ddpm.LatentInpaintDiffusion",
            "params": {
                "linear_start": cfg["linear_start"], "linear_end": cfg["linear_end"],
                "num_timesteps_cond": 1, "log_every_t": 200, "timesteps": cfg["timesteps"],
                "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 64, "channels": 4,
                "cond_stage_trainable": False, "conditioning_key": "hybrid",
                "monitor": "val/loss_simple_ema", "scale_factor": cfg["scale_factor"], "finetune_keys": None,
                "scheduler_config": {"target": "ldm.lr_scheduler.LambdaLinearScheduler", "params": {
                    "warm_up_steps": [2500], "cycle_lengths": [10000000000000], "f_start": [1.e-6],
                    "f_max": [1.], "f_min": [1.]}},
                "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
                    "image_size": 32, "in_channels": u["in_channels"], "out_channels": u["out_channels"],
                    "model_channels": u["model_channels"], "attention_resolutions": u["attention_resolutions"],
                    "num_res_blocks": u["num_res_blocks"], "channel_mult": u["channel_mult"],
                    "num_heads": u["num_heads"], "use_spatial_transformer": True,
                    "transformer_depth": u["transformer_depth"], "context_dim": u["context_dim"],
                    "use_checkpoint": True, "legacy": False}},
                "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
                    "embed_dim": v["embed_dim"], "monitor": "val/rec_loss",
                    "ddconfig": {"double_z": v["double_z"], "z_channels": v["z_channels"],
                                 "resolution": v["resolution"], "in_channels": v["in_channels"],
                                 "out_ch": v["out_ch"], "ch": v["ch"], "ch_mult": v["ch_mult"],
                                 "num_res_blocks": v["num_res_blocks"], "attn_resolutions": v["attn_resolutions"],
                                 "dropout": 0.0},
                    "lossconfig": {"target": "torch.nn.Identity"}}},
                "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"},
            },
        }
    }


def probe_inpainting(MC, cfg, te, unet, vae):
    """make_checkpoint.probe's statistics for a 9-channel UNet (the 4 latent channels get the same
    probe latent; the 5 extra channels a mask + a VAE-encoded image), plus how much the extra
    channels move eps (unet_image_cond_rel_diff: image_cond vs all zeros)."""
    import torch
    stats = {}

    class Cat9:  # the probe's unet(x, t, encoder_hidden_states=...) with a fixed image_cond
        def __init__(self, image_cond):
            self.ic = image_cond

        def __call__(self, x, t, encoder_hidden_states):
            return unet(torch.cat([x, self.ic.expand(x.shape[0], -1, -1, -1)], 1), t,
                        encoder_hidden_states=encoder_hidden_states)

    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        enc = vae.encode(img).latent_dist.mean * cfg["scale_factor"]
        mask = torch.zeros(1, 1, 8, 8)
        mask[:, :, 2:6, 2:6] = 1
        ic = torch.cat([mask, enc], 1)
        stats.update(MC.probe(cfg, te, Cat9(ic), vae, False))
        ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368] + [49407] * 71])
        ctx = te(input_ids=ids).last_hidden_state
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([500.0])
        eps = Cat9(ic)(x, t, ctx).sample
        eps0 = Cat9(torch.zeros_like(ic))(x, t, ctx).sample
        stats["unet_image_cond_rel_diff"] = ((eps - eps0).norm() / eps.norm()).item()
    return stats


def verify_single_file(path, yaml_path, expected_unet, dtype):
    """diffusers' single-file loader for the UNet with our .yaml as original_config."""
    import torch
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_single_file(path, original_config=yaml_path, torch_dtype=dtype)
    if unet.config.in_channels != 9:
        print(f"  from_single_file: in_channels {unet.config.in_channels} != 9")
        return 1
    got = {k: v for k, v in unet.state_dict().items()}
    bad = 0
    for k, v in expected_unet.items():
        if k not in got or got[k].shape != v.shape or not torch.equal(got[k].to(v.dtype), v):
            bad += 1
    if set(got) != set(expected_unet):
        bad += 1
    print(f"  unet (diffusers UNet2DConditionModel.from_single_file, original_config=.yaml): "
          f"{len(expected_unet)} tensors, in_channels {unet.config.in_channels}, {bad} mismatches")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: sd_ldm.py, make_checkpoint.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32", action="store_true", help="store float32 weights (default float16, as tiny-sd15)")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.ref))
    import torch
    import yaml
    from safetensors.torch import save_file
    import sd_ldm as S
    import make_checkpoint as MC

    torch.set_num_threads(args.threads)
    cfg = copy.deepcopy(S.SIZES["tiny"])
    cfg["name"] = "tiny-sd15-inpainting"
    cfg["unet"]["in_channels"] = 9
    dtype = None if args.fp32 else torch.float16

    t0 = time.time()
    torch.manual_seed(args.seed)
    te, unet, vae = S.build_modules(cfg)
    n_changed = MC.randomize_trivial_params([te, unet, vae], args.seed)
    print(f"built in {time.time() - t0:.1f}s; randomized {n_changed} all-ones/all-zeros tensors; "
          f"conv_in {tuple(unet.conv_in.weight.shape)}")
    stats = probe_inpainting(MC, cfg, te, unet, vae)
    print("probe: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}))
    problems = MC.check_degenerate(stats)
    if stats["unet_image_cond_rel_diff"] < 1e-2:
        problems.append("UNet ignores the 5 image-conditioning input channels")
    if problems:
        sys.exit("degenerate random model: " + "; ".join(problems))

    ldm = S.to_ldm_state_dict(cfg, te, unet, vae, dtype=dtype, extras=True)
    expected = {"text_encoder": MC.expected_state(te, dtype), "unet": MC.expected_state(unet, dtype),
                "vae": MC.expected_state(vae, dtype)}
    del te, unet, vae
    gc.collect()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(ldm, args.out, metadata={"format": "pt"})
    counts = {p: sum(1 for k in ldm if k.startswith(p)) for p in (S.UNET_PREFIX, S.VAE_PREFIX, S.CLIP_PREFIX)}
    conv_in = tuple(ldm[S.UNET_PREFIX + "input_blocks.0.0.weight"].shape)
    n_keys = len(ldm)
    del ldm
    digest = MC.sha256(args.out)
    print(f"wrote {args.out}: {n_keys} tensors ({counts}), input_blocks.0.0.weight {conv_in}, "
          f"{os.path.getsize(args.out) / 2**20:.2f} MiB, sha256 {digest}")

    stem = os.path.splitext(args.out)[0]
    with open(stem + ".yaml", "w") as f:
        yaml.safe_dump(inpainting_yaml(cfg), f, sort_keys=False)
    sidecar = {
        "format": "atelier-reference-sidecar/1",
        "checkpoint": os.path.basename(args.out),
        "sha256": digest,
        "seed": args.seed,
        "weights_dtype": "float32" if args.fp32 else "float16",
        "config": cfg,
        "conditioning_key": "hybrid",
        "notes": {
            "unet.in_channels": "9 = 4 latent channels + the 5-channel image conditioning (c_concat): "
                                "1 mask channel (1 = repaint) then the 4-channel scaled VAE latent of the masked "
                                "image; the UNet input is cat([x, mask, masked_image_latent], dim=1)",
            "conditioning_key": "hybrid (LDM LatentInpaintDiffusion / DiffusionWrapper): c_concat is concatenated to "
                                "the UNet input on the channel axis, c_crossattn is the context",
            "unet.num_heads": "SD1 semantics: a fixed number of heads per attention layer; head width = channels / num_heads",
            "unet.attention_resolutions": "level i (downsampling factor 2**i) has a SpatialTransformer iff 2**i is listed",
            "text_encoder": "CLIP text tower: causal self-attention, pre-LayerNorm, quick_gelu MLP, final_layer_norm; SD1 conditioning = last_hidden_state (after final_layer_norm) with clip_skip 1",
            "vae.scale_factor": "latents = scale_factor * posterior; decode divides by it first",
            "schedule": "betas = linspace(sqrt(linear_start), sqrt(linear_end), timesteps)**2 in float64; stored float32",
            "made_by": "tools/make_inpainting_model.py (the oracle's make_checkpoint.py recipe, tiny size, unet in_channels 9)",
        },
        "diffusers": {"unet": S.diffusers_unet_config(cfg), "vae": S.diffusers_vae_config(cfg),
                      "text_encoder": S.clip_text_config(cfg).to_dict()},
        "tensor_counts": counts,
        "probe_stats": stats,
    }
    with open(stem + ".json", "w") as f:
        json.dump(sidecar, f, indent=2, default=list)
    print(f"wrote {stem}.json and {stem}.yaml")

    if not args.no_verify:
        t0 = time.time()
        failures = MC.verify(args.out, cfg, expected, dtype)
        print("check 3: diffusers single-file loader")
        failures += verify_single_file(args.out, stem + ".yaml", expected["unet"], dtype or torch.float32)
        # the oracle's own loader (reference.load_pipeline -> sd_ldm.load_checkpoint, config from the .json)
        cfg2, te2, unet2, vae2, extras = S.load_checkpoint(args.out)
        ok = unet2.conv_in.weight.shape[1] == 9 and all(
            torch.equal(unet2.state_dict()[k].to(v.dtype), v) for k, v in expected["unet"].items())
        print(f"check 4: sd_ldm.load_checkpoint (the oracle's loader, sizes from the .json): "
              f"UNet in_channels {unet2.conv_in.weight.shape[1]}, {'bit-identical' if ok else 'MISMATCH'}; "
              f"{len(extras)} non-weight tensors")
        failures += 0 if ok else 1
        print(f"verification took {time.time() - t0:.1f}s")
        if failures:
            sys.exit(f"CHECK FAILED: {failures} mismatches")
        print("all read-back paths give bit-identical weights")


if __name__ == "__main__":
    main()
