#!/usr/bin/env python3
"""A tiny random SD 2.x checkpoint in the real SD 2 single-file layout (512-base eps or 768-v v-prediction).

    REF_VENV/bin/python tools/make_sd2_checkpoint.py --ref REF --out Tests/Fixtures/models/tiny-sd2.safetensors
    REF_VENV/bin/python tools/make_sd2_checkpoint.py --ref REF --v --out Tests/Fixtures/models/tiny-sd2-v.safetensors
        [--seed S] [--ldm-src DIR] [--no-verify] [--threads 2]

Default seeds: 2 (eps), 3 (--v). Writes next to PATH:
  PATH.safetensors  fp16 weights (schedule buffers float32), keys as stabilityai's v2-1 files:
      model.diffusion_model.*     openaimodel.UNetModel (SD 2: head WIDTH fixed (num_head_channels), linear
                                  proj_in / proj_out [c, c] (use_linear_in_transformer), context_dim = text width)
      first_stage_model.*         the tiny SD 1 VAE (sd_ldm TINY sizes)
      cond_stage_model.model.*    the OpenCLIP text tower ldm's FrozenOpenCLIPEmbedder holds (open_clip CLIP minus
                                  .visual): token_embedding.weight [49408, 32], positional_embedding [77, 32],
                                  transformer.resblocks.N.{ln_1, attn.in_proj_weight [96, 32], attn.in_proj_bias,
                                  attn.out_proj, ln_2, mlp.c_fc [128, 32], mlp.c_proj [32, 128]} (N = 0..2),
                                  ln_final, text_projection [32, 32], logit_scale [] (attn_mask is a non-persistent
                                  buffer, as in open_clip: not in the file)
      betas, alphas_cumprod, ... (12 DDPM buffers, float32, computed in float64 as ldm), model_ema.decay / num_updates
  PATH.yaml         configs/stable-diffusion/v2-inference.yaml (eps) or v2-inference-v.yaml (v: parameterization "v")
                    of Stability-AI/stablediffusion (what A1111 1.10 picks for SD 2) line for line, with the tiny
                    sizes: model_channels 32, channel_mult [1, 2, 2, 2], num_head_channels 16, context_dim 32, VAE ch 32
  PATH.json         config sidecar as tiny-sd15.json: sizes (the text tower's width / layers / heads cannot be read
                    from the yaml: it names no arch, and ldm would build ViT-H-14), diffusers configs, sha256, probe
                    statistics, and v_test (A1111's is_using_v_parameterization_for_sd2 statistic on this UNet)

Sizes: UNet as the oracle's tiny SD 1 (32/64/64/64, channel_mult [1, 2, 2, 2], 2 res blocks, attention at
downsampling 4, 2, 1, transformer depth 1) but SD 2's attention: num_head_channels 16, i.e. 2 / 4 / 4 heads at
levels 0 / 1 / 2 and 4 in the middle block (no level has 8 heads, so an engine that kept SD 1's fixed head count,
or read 16 as a head count, is wrong everywhere), use_linear_in_transformer, context_dim 32. Text: OpenCLIP,
vocab 49408, 77 positions, width 32, 3 layers, 4 heads, MLP 128, exact GELU (ViT-H-14 has no quick_gelu),
LayerNorm eps 1e-5, causal mask; SD 2's "penultimate" layer = resblocks 0, 1 then ln_final; no text_projection in
the conditioning. VAE, schedule (linear_start 0.00085, linear_end 0.012, 1000 steps): as tiny SD 1.

Init: torch.manual_seed(seed); text tower (open_clip's TextTransformer init: token_embedding N(0, 0.02),
positional N(0, 0.01), attn / mlp std rules; logit_scale log(1/0.07) as open_clip CLIP), UNet and VAE (diffusers
default init), in that order; then the oracle's re-init rule (every all-ones tensor -> 1 + 0.1 N(0,1), every
all-zeros one -> 0.1 N(0,1), generator seed + 1000003, modules in the order text, UNet, VAE; ln_final.bias + 0.1).
The text tower's MultiheadAttention runs sequence-first (batch_first=False), as open_clip 2.20 (A1111 1.10's pin)
with ldm's permute(1, 0, 2): that is PyTorch's slow MHA path, bit for bit what A1111 runs on CPU.

Checks (unless --no-verify):
  1. our inverse mapping into fresh modules (UNet / VAE through sd_ldm's rules, text tower by its open_clip names):
     every tensor bit-identical to what was written;
  2. diffusers' converters with configs derived from the written yaml (create_unet_diffusers_config_from_ldm ->
     attention_head_dim [2, 4, 4, 4], use_linear_projection; convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
     convert_open_clip_checkpoint into a transformers CLIPTextModel with hidden_act gelu): bit-identical weights;
  3. diffusers' single-file loaders: UNet2DConditionModel / AutoencoderKL.from_single_file(original_config=yaml)
     and StableDiffusionPipeline.from_single_file(config=<a local diffusers skeleton>, original_config=yaml):
     bit-identical weights (the skeleton is saved with other random weights, so nothing comes from it);
  4. text outputs: our ldm-style encoder vs open_clip's own TextTransformer (batch-first, loaded with the file's
     text weights, its forward's transformer + ln_final, and its forward_intermediates at block 1 + ln_final for
     the penultimate layer) and vs the transformers CLIPTextModel of check 2 (hidden_states[-2] + final_layer_norm,
     what diffusers' SD 2 pipelines use): max abs differences printed, sequence-first vs batch-first reported;
  5. with --ldm-src DIR (a checkout of Stability-AI/stablediffusion, the repository A1111 clones as
     repositories/stable-diffusion-stability-ai; needs einops on sys.path): the written yaml has exactly the keys
     and values of DIR/configs/stable-diffusion/v2-inference(-v).yaml except the tiny sizes, and ldm's own
     openaimodel.UNetModel built from the yaml's unet_config (use_fp16 False) loaded strictly with the file's
     model.diffusion_model.* gives the same output as the diffusers UNet (max abs printed).
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256  # noqa: E402 (tools/ is the script's own folder)
TEXT_PREFIX = "cond_stage_model.model."
DEFAULT_SEED = {"eps": 2, "v": 3}


def use_ref(ref):
    ref = os.path.abspath(ref)
    if ref not in sys.path:
        sys.path.insert(0, ref)
    import sd_ldm as S  # noqa: F401
    return S


def tiny_sd2_config(v):
    import sd_ldm as S
    return {
        "name": "tiny-sd2-v" if v else "tiny-sd2",
        "family": "sd2",
        "unet": {"in_channels": 4, "out_channels": 4, "model_channels": 32, "channel_mult": [1, 2, 2, 2],
                 "num_res_blocks": 2, "attention_resolutions": [4, 2, 1], "num_heads": -1, "num_head_channels": 16,
                 "transformer_depth": 1, "context_dim": 32, "use_linear_in_transformer": True},
        "vae": copy.deepcopy(S.TINY["vae"]),
        "text_encoder": {"kind": "open_clip", "vocab_size": 49408, "context_length": 77, "width": 32, "heads": 4,
                         "layers": 3, "mlp_ratio": 4.0, "mlp_width": 128, "act": "gelu", "layer_norm_eps": 1e-5,
                         "embed_dim": 32, "layer": "penultimate", "layer_idx": 1, "pad_id": 0,
                         "bos_id": 49406, "eos_id": 49407},
        "scale_factor": S.SCALE_FACTOR,
        "linear_start": S.LINEAR_START, "linear_end": S.LINEAR_END, "timesteps": S.NUM_TIMESTEPS,
        "parameterization": "v" if v else "eps",
    }


def unet_heads(u):
    """Heads per level, SD 2 style: channels // num_head_channels (ldm openaimodel: num_heads = ch // num_head_channels)."""
    return [u["model_channels"] * m // u["num_head_channels"] for m in u["channel_mult"]]


def diffusers_unet_config(cfg):
    import sd_ldm as S
    u = cfg["unet"]
    down, up = S.unet_block_types(u)
    return dict(
        sample_size=32, in_channels=u["in_channels"], out_channels=u["out_channels"],
        down_block_types=tuple(down), up_block_types=tuple(up),
        block_out_channels=tuple(u["model_channels"] * m for m in u["channel_mult"]),
        layers_per_block=u["num_res_blocks"], cross_attention_dim=u["context_dim"],
        # diffusers' "attention_head_dim" is a head COUNT (per down block; up blocks reversed, mid = last)
        attention_head_dim=tuple(unet_heads(u)), use_linear_projection=u["use_linear_in_transformer"],
        transformer_layers_per_block=u["transformer_depth"],
        norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
    )


def clip_text_config(cfg):
    """The transformers CLIPTextConfig diffusers converts an OpenCLIP tower into (all layers kept; the SD 2
    conditioning is hidden_states[-2] + final_layer_norm, which diffusers' hub configs get by dropping the last layer)."""
    from transformers import CLIPTextConfig
    t = cfg["text_encoder"]
    return CLIPTextConfig(
        vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=t["mlp_width"],
        num_hidden_layers=t["layers"], num_attention_heads=t["heads"], max_position_embeddings=t["context_length"],
        hidden_act="gelu", layer_norm_eps=t["layer_norm_eps"], projection_dim=t["embed_dim"],
        bos_token_id=t["bos_id"], eos_token_id=t["eos_id"], pad_token_id=t["pad_id"],
    )


class OpenCLIPTextTower(nn.Module):
    """The text half of an open_clip CLIP model, as ldm's FrozenOpenCLIPEmbedder holds it in `self.model` (after
    `del model.visual`): state_dict keys token_embedding.weight, positional_embedding, transformer.resblocks.*,
    ln_final.*, text_projection, logit_scale (attn_mask non-persistent).

    forward(tokens) is ldm's FrozenOpenCLIPEmbedder.encode_with_transformer (stablediffusion
    ldm/modules/encoders/modules.py): token_embedding + positional_embedding, permute to sequence-first,
    resblocks 0 .. len - layer_idx - 1 with the causal attn_mask, permute back, ln_final. No text_projection.
    layer_idx 1 = "penultimate" (v2-inference*.yaml), 0 = "last"."""

    def __init__(self, t):
        super().__init__()
        from open_clip.transformer import LayerNorm, TextTransformer, Transformer
        text = TextTransformer(context_length=t["context_length"], vocab_size=t["vocab_size"], width=t["width"],
                               heads=t["heads"], layers=t["layers"], mlp_ratio=t["mlp_ratio"],
                               output_dim=t["embed_dim"], act_layer=nn.GELU, norm_layer=LayerNorm)
        # open_clip 2.20 (A1111 1.10's requirement) runs its resblocks sequence-first (nn.MultiheadAttention with
        # batch_first=False); open_clip 3.x defaults to batch-first. Same weights, sequence-first modules.
        seq_first = Transformer(width=t["width"], layers=t["layers"], heads=t["heads"], mlp_ratio=t["mlp_ratio"],
                                act_layer=nn.GELU, norm_layer=LayerNorm, batch_first=False)
        seq_first.load_state_dict(text.transformer.state_dict())
        self.transformer = seq_first
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))  # open_clip CLIP's init
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)
        self.layer_idx = 1 if t.get("layer", "penultimate") == "penultimate" else 0

    def forward(self, tokens, layer_idx=None):
        layer_idx = self.layer_idx if layer_idx is None else layer_idx
        x = self.token_embedding(tokens)
        x = x + self.positional_embedding
        x = x.permute(1, 0, 2)  # NLD -> LND
        blocks = self.transformer.resblocks
        for i, r in enumerate(blocks):
            if i == len(blocks) - layer_idx:
                break
            x = r(x, attn_mask=self.attn_mask)
        x = x.permute(1, 0, 2)  # LND -> NLD
        return self.ln_final(x)


def build_modules(cfg):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    import sd_ldm as S
    te = OpenCLIPTextTower(cfg["text_encoder"])
    unet = UNet2DConditionModel(**diffusers_unet_config(cfg))
    vae = AutoencoderKL(**S.diffusers_vae_config(cfg))
    return te.eval(), unet.eval(), vae.eval()


@torch.no_grad()
def randomize_trivial_params(modules, seed, spread=0.1, text_ln_offset=0.1):
    """The oracle's rule (make_checkpoint.randomize_trivial_params) for an OpenCLIP text tower."""
    g = torch.Generator().manual_seed(seed + 1_000_003)
    changed = 0
    for mod in modules:
        for _, p in mod.named_parameters():
            if torch.all(p == 1):
                p.copy_(1 + spread * torch.randn(p.shape, generator=g))
            elif torch.all(p == 0):
                p.copy_(spread * torch.randn(p.shape, generator=g))
            else:
                continue
            changed += 1
    modules[0].ln_final.bias.add_(text_ln_offset)
    return changed


def text_state_dict(te):
    return {k: v for k, v in te.state_dict().items()}


def to_ldm_state_dict(cfg, te, unet, vae, dtype=None):
    import sd_ldm as S
    sds = {"unet": unet.state_dict(), "vae": vae.state_dict()}
    mapping = S.name_map(cfg, [], sds["unet"].keys(), sds["vae"].keys())
    out = {}
    for ldm, (comp, key) in mapping.items():
        t = sds[comp][key].detach()
        if comp == "vae" and S.is_vae_attn_matrix(ldm):
            t = t.reshape(*t.shape, 1, 1)
        out[ldm] = t
    for k, t in text_state_dict(te).items():
        out[TEXT_PREFIX + k] = t.detach()
    if dtype is not None:
        out = {k: (t.to(dtype) if t.is_floating_point() else t) for k, t in out.items()}
    out = {k: t.contiguous() for k, t in out.items()}
    out.update(S.schedule_buffers(cfg))  # float32, as the oracle's SD 1 files
    out["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    out["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return out


def load_text_tower(cfg, sd, te):
    want = te.state_dict()
    loaded = {}
    for k, ref in want.items():
        key = TEXT_PREFIX + k
        if key not in sd:
            raise KeyError(f"text tower: {key} missing from checkpoint")
        if tuple(sd[key].shape) != tuple(ref.shape):
            raise ValueError(f"{key}: shape {tuple(sd[key].shape)} in file, model expects {tuple(ref.shape)}")
        loaded[k] = sd[key].to(ref.dtype)
    te.load_state_dict(loaded, strict=True)
    return {TEXT_PREFIX + k for k in want}


def sidecar_config(path):
    with open(os.path.splitext(path)[0] + ".json") as f:
        return json.load(f)["config"]


def load_checkpoint(path, cfg=None):
    """-> (cfg, te, unet, vae, extras) with float32 modules; extras = every non-weight tensor of the file."""
    from safetensors.torch import load_file
    import sd_ldm as S
    cfg = cfg or sidecar_config(path)
    sd = load_file(path)
    te, unet, vae = build_modules(cfg)
    used = load_text_tower(cfg, sd, te)
    used |= S.load_component(cfg, sd, "unet", unet)
    used |= S.load_component(cfg, sd, "vae", vae)
    extras = {k: sd[k] for k in sd if k not in used}
    return cfg, te, unet, vae, extras


# ---------------------------------------------------------------------------- probes

PROBE_IDS = ([49406, 320, 1125, 539, 320, 2368, 49407], [49406, 320, 1125, 539, 320, 1929, 49407])  # "a photo of a cat/dog"


def pad_sd2(ids, n=77, eos=49407, pad=0):
    """A1111 for SD 2: chunk padded with EOS, then everything after the first EOS replaced by id_pad 0."""
    ids = list(ids) + [eos] * (n - len(ids))
    first = ids.index(eos)
    return ids[:first + 1] + [pad] * (n - first - 1)


@torch.no_grad()
def probe(cfg, te, unet, vae):
    stats = {}
    ids = torch.tensor([pad_sd2(p) for p in PROBE_IDS])
    out = te(ids)
    stats["text_hidden_std"] = out.std().item()
    stats["text_hidden_mean"] = out.mean().item()
    stats["text_cat_vs_dog_rel_diff"] = ((out[0] - out[1]).norm() / out[0].norm()).item()
    last = te(ids, layer_idx=0)
    stats["text_penultimate_vs_last_rel_diff"] = ((out - last).norm() / out.norm()).item()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g).expand(2, 4, 8, 8)
    e = unet(x, torch.tensor([500.0, 500.0]), encoder_hidden_states=out).sample
    e50 = unet(x, torch.tensor([50.0, 50.0]), encoder_hidden_states=out).sample
    stats["unet_out_std"] = e.std().item()
    stats["unet_out_spatial_std"] = e[0].std(dim=(1, 2)).mean().item()
    stats["unet_cat_vs_dog_rel_diff"] = ((e[0] - e[1]).norm() / e[0].norm()).item()
    stats["unet_t500_vs_t50_rel_diff"] = ((e - e50).norm() / e.norm()).item()
    img = vae.decode(x[:1] / cfg["scale_factor"]).sample
    stats["vae_decode_std"] = img.std().item()
    stats["vae_decode_spatial_std_per_channel"] = img[0].std(dim=(1, 2)).tolist()
    stats["vae_decode_fraction_clipped"] = (img.abs() > 1).float().mean().item()
    return stats


def check_degenerate(stats):
    problems = []
    if abs(stats["text_hidden_mean"]) < 0.02 * stats["text_hidden_std"]:
        problems.append("conditioning mean ~0: A1111 emphasis mean-restoration would be ill-conditioned")
    if stats["text_cat_vs_dog_rel_diff"] < 1e-3:
        problems.append("text tower ignores the prompt")
    if stats["text_penultimate_vs_last_rel_diff"] < 1e-2:
        problems.append("penultimate and last layer nearly equal: a clip-skip / layer mistake would not show")
    if stats["unet_out_spatial_std"] < 1e-3 or stats["unet_cat_vs_dog_rel_diff"] < 1e-4:
        problems.append("UNet output is flat or ignores the conditioning")
    if min(stats["vae_decode_spatial_std_per_channel"]) < 1e-2:
        problems.append("VAE decode is (nearly) constant")
    if stats["vae_decode_fraction_clipped"] > 0.5:
        problems.append("VAE decode mostly saturates")
    return problems


@torch.no_grad()
def v_test_statistic(unet, cfg):
    """A1111 1.10 sd_models_config.is_using_v_parameterization_for_sd2, on this UNet in float32:
    out = (unet(x_test, t=[999], context=test_cond) - x_test).mean(), x_test = 0.5 * ones(1, 4, 8, 8),
    test_cond = 0.5 * ones(1, 2, context_dim); A1111 returns out < -1 (True = v-parameterization)."""
    unet = copy.deepcopy(unet).float()
    ctx = cfg["unet"]["context_dim"]
    x = torch.ones((1, 4, 8, 8)) * 0.5
    c = torch.ones((1, 2, ctx)) * 0.5
    out = (unet(x, torch.asarray([999]), encoder_hidden_states=c).sample - x).mean().item()
    return out


# ---------------------------------------------------------------------------- yaml

V2_YAML = """model:
  base_learning_rate: 1.0e-4
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
{param_v}    linear_start: {linear_start}
    linear_end: {linear_end_str}
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: {timesteps}
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: 64
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: {scale_factor}
    use_ema: False # we set this to false because this is an inference only config

    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        use_checkpoint: True
        use_fp16: True
        image_size: 32 # unused
        in_channels: {u_in}
        out_channels: {u_out}
        model_channels: {model_channels}
        attention_resolutions: [ {attn_res} ]
        num_res_blocks: {num_res_blocks}
        channel_mult: [ {channel_mult} ]
        num_head_channels: {num_head_channels} # need to fix for flash-attn
        use_spatial_transformer: True
        use_linear_in_transformer: True
        transformer_depth: {transformer_depth}
        context_dim: {context_dim}
        legacy: False

    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: {embed_dim}
        monitor: val/rec_loss
        ddconfig:
          #attn_type: "vanilla-xformers"
          double_z: true
          z_channels: {z_channels}
          resolution: {resolution}
          in_channels: {v_in}
          out_ch: {v_out}
          ch: {ch}
          ch_mult:
{ch_mult}
          num_res_blocks: {v_res}
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity

    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"""


def v2_yaml_text(cfg):
    """stablediffusion configs/stable-diffusion/v2-inference.yaml / v2-inference-v.yaml (commit cf1d67a6, the one
    A1111 1.10 pins) line for line, comments included, with cfg's sizes."""
    u, v = cfg["unet"], cfg["vae"]
    assert cfg["text_encoder"]["layer"] == "penultimate"
    return V2_YAML.format(
        param_v='    parameterization: "v"\n' if cfg["parameterization"] == "v" else "",
        linear_start=cfg["linear_start"], linear_end_str=f"{cfg['linear_end']:.4f}", timesteps=cfg["timesteps"],
        scale_factor=cfg["scale_factor"], u_in=u["in_channels"], u_out=u["out_channels"],
        model_channels=u["model_channels"], attn_res=", ".join(map(str, u["attention_resolutions"])),
        num_res_blocks=u["num_res_blocks"], channel_mult=", ".join(map(str, u["channel_mult"])),
        num_head_channels=u["num_head_channels"], transformer_depth=u["transformer_depth"],
        context_dim=u["context_dim"], embed_dim=v["embed_dim"], z_channels=v["z_channels"],
        resolution=v["resolution"], v_in=v["in_channels"], v_out=v["out_ch"], ch=v["ch"],
        ch_mult="\n".join(f"          - {m}" for m in v["ch_mult"]), v_res=v["num_res_blocks"])


# ---------------------------------------------------------------------------- checks


def compare(name, expected, got):
    bad = 0
    if set(expected) != set(got):
        print(f"  {name}: key sets differ: only expected {sorted(set(expected) - set(got))[:5]}, "
              f"only loaded {sorted(set(got) - set(expected))[:5]}")
        return max(1, len(set(expected) ^ set(got)))
    for k in expected:
        a, b = expected[k], got[k]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
            if bad < 5:
                print(f"  {name}: {k} differs ({tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype})")
            bad += 1
    print(f"  {name}: {len(expected)} tensors, {bad} mismatches")
    return bad


def state(module, dtype, skip=("position_ids",)):
    sd = {k: v.detach().clone() for k, v in module.state_dict().items() if not k.endswith(skip)}
    return {k: (v.to(dtype) if (dtype is not None and v.is_floating_point()) else v) for k, v in sd.items()}


def hf_expected_text(te_sd, cfg):
    """The transformers CLIPTextModel state an OpenCLIP tower maps to (q/k/v = rows of in_proj; no projection)."""
    w = cfg["text_encoder"]["width"]
    out = {"embeddings.token_embedding.weight": te_sd["token_embedding.weight"],
           "embeddings.position_embedding.weight": te_sd["positional_embedding"],
           "final_layer_norm.weight": te_sd["ln_final.weight"], "final_layer_norm.bias": te_sd["ln_final.bias"]}
    for n in range(cfg["text_encoder"]["layers"]):
        p, q = f"transformer.resblocks.{n}.", f"encoder.layers.{n}."
        for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
            out[q + f"self_attn.{part}.weight"] = te_sd[p + "attn.in_proj_weight"][i * w:(i + 1) * w]
            out[q + f"self_attn.{part}.bias"] = te_sd[p + "attn.in_proj_bias"][i * w:(i + 1) * w]
        for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                     ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            out[q + a + ".weight"] = te_sd[p + b + ".weight"]
            out[q + a + ".bias"] = te_sd[p + b + ".bias"]
    return out


def hf_text_state(model):
    sd = state(model, None)
    return {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in sd.items()}


def verify(path, yaml_path, cfg, expected, file_dtype, ldm_src=None):
    import yaml
    from safetensors.torch import load_file
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextModel
    import sd_ldm as S

    sd = load_file(path)
    failures = 0
    report = {}

    print("check 1: our inverse mapping -> fresh modules")
    torch.manual_seed(12345)  # other random weights, so a tensor that is not loaded would show
    te, unet, vae = build_modules(cfg)
    used = load_text_tower(cfg, sd, te)
    used |= S.load_component(cfg, sd, "unet", unet)
    used |= S.load_component(cfg, sd, "vae", vae)
    failures += compare("text tower", expected["text"], state(te, file_dtype))
    failures += compare("unet", expected["unet"], state(unet, file_dtype))
    failures += compare("vae", expected["vae"], state(vae, file_dtype))
    extra = sorted(k for k in sd if k not in used)
    print(f"  non-weight tensors in file: {len(extra)} ({', '.join(extra)})")
    for k, v in S.schedule_buffers(cfg).items():
        if not torch.equal(sd[k], v):
            print(f"  schedule buffer {k} differs")
            failures += 1

    print("check 2: diffusers' converters with configs derived from the written yaml")
    with open(yaml_path) as f:
        original = yaml.safe_load(f)
    unet_cfg = sfu.create_unet_diffusers_config_from_ldm(original, sd)
    mine = diffusers_unet_config(cfg)
    for k in ("down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim",
              "attention_head_dim", "use_linear_projection", "in_channels", "out_channels"):
        a, b = unet_cfg[k], mine[k]
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            print(f"  UNet config {k}: diffusers derives {a}, we use {b}")
            failures += 1
    print(f"  derived attention_head_dim (head counts) {unet_cfg['attention_head_dim']}, "
          f"use_linear_projection {unet_cfg['use_linear_projection']}")
    vae_cfg = sfu.create_vae_diffusers_config_from_ldm(original, sd)
    u2 = UNet2DConditionModel(**unet_cfg)
    u2.load_state_dict(sfu.convert_ldm_unet_checkpoint(sd, unet_cfg), strict=True)
    failures += compare("unet (convert_ldm_unet_checkpoint)", expected["unet"], state(u2, file_dtype))
    v2 = AutoencoderKL(**vae_cfg)
    v2.load_state_dict(sfu.convert_ldm_vae_checkpoint(sd, vae_cfg), strict=True)
    failures += compare("vae (convert_ldm_vae_checkpoint)", expected["vae"], state(v2, file_dtype))
    hf = CLIPTextModel(clip_text_config(cfg)).eval()
    conv = sfu.convert_open_clip_checkpoint(hf, sd, prefix=TEXT_PREFIX)
    conv = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in conv.items()}
    res = hf.load_state_dict(conv, strict=False)
    bad_keys = [k for k in res.missing_keys if not k.endswith("position_ids")] + list(res.unexpected_keys)
    if bad_keys:
        print(f"  text (convert_open_clip_checkpoint): missing/unexpected {bad_keys[:5]}")
        failures += 1
    exp_hf = hf_expected_text(expected["text"], cfg)
    failures += compare("text -> transformers CLIPTextModel (convert_open_clip_checkpoint)", exp_hf,
                        state_as(hf_text_state(hf), file_dtype))

    print("check 3: diffusers' single-file loaders")
    failures += check_single_file(path, yaml_path, cfg, expected, file_dtype)

    print("check 4: text outputs (float32, file weights)")
    te.float()
    hf.float()
    report.update(check_text_outputs(cfg, te, hf, sd))

    if ldm_src:
        print(f"check 5: stablediffusion's own yaml and UNetModel ({ldm_src})")
        f5, r5 = check_ldm(ldm_src, yaml_path, cfg, sd, unet)
        failures += f5
        report.update(r5)
    return failures, report


def state_as(sd, dtype):
    return {k: (v.to(dtype) if (dtype is not None and v.is_floating_point()) else v) for k, v in sd.items()}


def check_single_file(path, yaml_path, cfg, expected, file_dtype):
    import tempfile
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    failures = 0
    u = UNet2DConditionModel.from_single_file(path, original_config=yaml_path, torch_dtype=torch.float32)
    failures += compare("UNet2DConditionModel.from_single_file", expected["unet"], state(u, file_dtype))
    v = AutoencoderKL.from_single_file(path, original_config=yaml_path, torch_dtype=torch.float32)
    failures += compare("AutoencoderKL.from_single_file", expected["vae"], state(v, file_dtype))
    tok_dir = os.environ.get("ATELIER_CLIP_TOKENIZER")
    if not tok_dir:
        print("  (pipeline check skipped: set ATELIER_CLIP_TOKENIZER=MODELS_DIR/clip-tokenizer)")
        return failures
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(999)  # the skeleton's own weights are other random numbers
        te_cfg = clip_text_config(cfg)
        sk = StableDiffusionPipeline(
            vae=AutoencoderKL(**v.config), text_encoder=CLIPTextModel(te_cfg), tokenizer=CLIPTokenizer.from_pretrained(tok_dir),
            unet=UNet2DConditionModel(**u.config),
            scheduler=DDIMScheduler(beta_start=cfg["linear_start"], beta_end=cfg["linear_end"],
                                    beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                    prediction_type="v_prediction" if cfg["parameterization"] == "v" else "epsilon"),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        sk.save_pretrained(tmp)
        del sk
        pipe = StableDiffusionPipeline.from_single_file(path, config=tmp, original_config=yaml_path,
                                                        local_files_only=True, torch_dtype=torch.float32,
                                                        safety_checker=None, requires_safety_checker=False)
        failures += compare("StableDiffusionPipeline.from_single_file: unet", expected["unet"], state(pipe.unet, file_dtype))
        failures += compare("StableDiffusionPipeline.from_single_file: vae", expected["vae"], state(pipe.vae, file_dtype))
        failures += compare("StableDiffusionPipeline.from_single_file: text_encoder",
                            hf_expected_text(expected["text"], cfg), state_as(hf_text_state(pipe.text_encoder), file_dtype))
        print(f"  pipeline scheduler prediction_type: {pipe.scheduler.config.prediction_type} (from the skeleton)")
    return failures


@torch.no_grad()
def check_text_outputs(cfg, te, hf, sd):
    """Our ldm-style encoder vs open_clip's TextTransformer (batch-first) and transformers' CLIPTextModel."""
    from open_clip.transformer import LayerNorm, TextTransformer
    t = cfg["text_encoder"]
    oc = TextTransformer(context_length=t["context_length"], vocab_size=t["vocab_size"], width=t["width"],
                         heads=t["heads"], layers=t["layers"], mlp_ratio=t["mlp_ratio"], output_dim=t["embed_dim"],
                         act_layer=nn.GELU, norm_layer=LayerNorm).eval()
    oc_sd = {k[len(TEXT_PREFIX):]: v.float() for k, v in sd.items() if k.startswith(TEXT_PREFIX)}
    oc_sd.pop("logit_scale")
    oc.load_state_dict(oc_sd, strict=True)
    ids = torch.tensor([pad_sd2(p) for p in PROBE_IDS] + [[49406, 49407] + [0] * 75, [49406] + [320] * 75 + [49407]])
    report = {}

    def d(a, b):
        return float((a.double() - b.double()).abs().max())

    ours_last, ours_pen = te(ids, layer_idx=0), te(ids, layer_idx=1)
    # open_clip's own forward path (batch-first transformer + ln_final), as CLIP.encode_text before pooling
    x = oc.token_embedding(ids) + oc.positional_embedding
    oc_last = oc.ln_final(oc.transformer(x, attn_mask=oc.attn_mask))
    inter = oc.forward_intermediates(ids, indices=[t["layers"] - 2], normalize_intermediates=False,
                                     intermediates_only=True, output_fmt="NLC")["text_intermediates"][0]
    oc_pen = oc.ln_final(inter)
    hs = hf(input_ids=ids, output_hidden_states=True).hidden_states
    hf_pen = hf.final_layer_norm(hs[-2]) if hasattr(hf, "final_layer_norm") else hf.text_model.final_layer_norm(hs[-2])
    hf_last = hf(input_ids=ids).last_hidden_state
    report["text_ours_vs_open_clip_batch_first_last_max_abs"] = d(ours_last, oc_last)
    report["text_ours_vs_open_clip_batch_first_penultimate_max_abs"] = d(ours_pen, oc_pen)
    report["text_ours_vs_transformers_penultimate_max_abs"] = d(ours_pen, hf_pen)
    report["text_ours_vs_transformers_last_max_abs"] = d(ours_last, hf_last)
    for k, v in report.items():
        print(f"  {k}: {v:.3g}")
    return report


def check_ldm(src, yaml_path, cfg, sd, unet):
    import yaml
    failures, report = 0, {}
    sys.path.insert(0, os.path.abspath(src))
    real_name = "v2-inference-v.yaml" if cfg["parameterization"] == "v" else "v2-inference.yaml"
    with open(os.path.join(src, "configs", "stable-diffusion", real_name)) as f:
        real = yaml.safe_load(f)
    with open(yaml_path) as f:
        mine = yaml.safe_load(f)
    sizes = {"model.params.unet_config.params.model_channels", "model.params.unet_config.params.channel_mult",
             "model.params.unet_config.params.num_head_channels", "model.params.unet_config.params.context_dim",
             "model.params.first_stage_config.params.ddconfig.ch", "model.params.first_stage_config.params.ddconfig.ch_mult"}

    def walk(a, b, p):
        nonlocal failures
        if isinstance(a, dict) and isinstance(b, dict):
            if set(a) != set(b):
                print(f"  yaml {p}: keys differ {sorted(set(a) ^ set(b))}")
                failures += 1
            for k in set(a) & set(b):
                walk(a[k], b[k], f"{p}.{k}" if p else k)
        elif a != b:
            if p in sizes:
                print(f"  yaml {p}: {a} (real) -> {b} (tiny)")
            else:
                print(f"  yaml {p}: real {a!r} != ours {b!r}")
                failures += 1

    walk(real, mine, "")
    print(f"  yaml vs {real_name}: {'same keys and values apart from the sizes' if not failures else 'DIFFERENT'}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import a1111_unet
    a1111_unet.stub_omegaconf()
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    params = dict(mine["model"]["params"]["unet_config"]["params"])
    params.update(use_fp16=False, use_checkpoint=False)  # A1111 repair_config with --no-half / float32
    lu = UNetModel(**params).eval()
    usd = {k[len("model.diffusion_model."):]: v.float() for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    lu.load_state_dict(usd, strict=True)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=g)
    ctx = torch.randn(2, 77, cfg["unet"]["context_dim"], generator=g)
    t = torch.tensor([981.0, 33.5])
    with torch.no_grad():
        a = lu(x, t, context=ctx)
        b = unet.float()(x, t, encoder_hidden_states=ctx).sample
    diff = float((a - b).abs().max())
    rel = float((a - b).norm() / b.norm())
    heads = [m.attn1.heads for m in lu.modules() if type(m).__name__ == "BasicTransformerBlock"]
    lin = sorted({type(m.proj_in).__name__ for m in lu.modules() if type(m).__name__ == "SpatialTransformer"})
    print(f"  ldm UNetModel vs diffusers UNet (t 981 / 33.5, 16x16): max abs {diff:.3g}, rel L2 {rel:.3g}; "
          f"ldm heads per transformer {heads}, proj_in {lin}")
    if not rel < 1e-5:
        failures += 1
    report.update(ldm_unet_vs_diffusers_max_abs=diff, ldm_unet_vs_diffusers_rel_l2=rel, ldm_heads=heads)
    return failures, report


# ---------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: sd_ldm.py, ...)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--v", action="store_true", help="v-prediction (768-v style: v2-inference-v.yaml)")
    ap.add_argument("--seed", type=int, default=None, help="default 2 (eps) / 3 (--v)")
    ap.add_argument("--ldm-src", default=None, help="a Stability-AI/stablediffusion checkout for check 5")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    use_ref(args.ref)
    torch.set_num_threads(args.threads)
    cfg = tiny_sd2_config(args.v)
    seed = DEFAULT_SEED["v" if args.v else "eps"] if args.seed is None else args.seed
    dtype = torch.float16

    torch.manual_seed(seed)
    te, unet, vae = build_modules(cfg)
    n = randomize_trivial_params([te, unet, vae], seed)
    print(f"built: text {sum(p.numel() for p in te.parameters()):,} / unet {sum(p.numel() for p in unet.parameters()):,} "
          f"/ vae {sum(p.numel() for p in vae.parameters()):,} parameters; re-initialised {n} all-ones/zeros tensors")
    # probe and v statistic on the weights as stored (fp16 -> float32), i.e. what a reader of the file sees
    ldm = to_ldm_state_dict(cfg, te, unet, vae, dtype=dtype)
    expected = {"text": state(te, dtype), "unet": state(unet, dtype), "vae": state(vae, dtype)}
    for m, key in ((te, "text"), (unet, "unet"), (vae, "vae")):
        m.load_state_dict(state_as(expected[key], torch.float32), strict=False)
    stats = probe(cfg, te, unet, vae)
    print("probe: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}))
    problems = check_degenerate(stats)
    if problems:
        sys.exit("degenerate random model: " + "; ".join(problems))
    vstat = v_test_statistic(unet, cfg)
    print(f"A1111 is_using_v_parameterization_for_sd2 statistic on this UNet: {vstat:.4f} -> would return {vstat < -1}")

    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(ldm, args.out, metadata={"format": "pt"})
    counts = {p: sum(1 for k in ldm if k.startswith(p)) for p in ("model.diffusion_model.", "first_stage_model.", TEXT_PREFIX)}
    n_keys = len(ldm)
    del ldm
    digest = sha256(args.out)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {n_keys} tensors {counts}, {size / 2**20:.2f} MiB, sha256 {digest}")
    stem = os.path.splitext(args.out)[0]
    with open(stem + ".yaml", "w") as f:
        f.write(v2_yaml_text(cfg))
    import sd_ldm as S
    sidecar = {
        "format": "atelier-reference-sidecar/1",
        "checkpoint": os.path.basename(args.out),
        "sha256": digest,
        "seed": seed,
        "weights_dtype": "float16",
        "made_by": "tools/make_sd2_checkpoint.py" + (" --v" if args.v else ""),
        "config": cfg,
        "notes": {
            "family": "SD 2.x (A1111 1.10 picks it by cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight "
                      "with shape[1] == 1024; this tiny tower is 32 wide, so A1111's guess would fall through to "
                      "v1-inference.yaml: only the .yaml next to the file (find_checkpoint_config_near_filename) makes it SD 2)",
            "unet.num_head_channels": "SD 2 semantics: a fixed head WIDTH; heads = channels // num_head_channels "
                                      f"= {unet_heads(cfg['unet'])} per level (mid block: the last level's); num_heads -1 (unused)",
            "unet.use_linear_in_transformer": "proj_in / proj_out are Linear [c, c] (not 1x1 convs [c, c, 1, 1])",
            "text_encoder": "OpenCLIP text tower (cond_stage_model.model.*): token_embedding + positional_embedding, causal "
                            "pre-LN resblocks (ln_1, attn in_proj q|k|v rows, out_proj, ln_2, mlp c_fc -> exact GELU -> "
                            "c_proj), ln_final. SD 2 conditioning (ldm FrozenOpenCLIPEmbedder layer 'penultimate'): "
                            "resblocks 0 .. layers-2, then ln_final; text_projection / logit_scale unused. A1111 ignores "
                            "the CLIP-skip setting for it. Token ids: A1111 pads chunks with EOS 49407 and then sets "
                            "everything after the FIRST EOS to 0 (id_pad)",
            "text_encoder.heads": "cannot be read from the file (32 wide: 4 heads of 8); ldm's yaml names no arch "
                                  "(FrozenOpenCLIPEmbedder defaults to ViT-H-14: 1024 wide, 24 layers, 16 heads)",
            "parameterization": "v: k-diffusion CompVisVDenoiser / A1111 CompVisTimestepsVDenoiser; eps: CompVisDenoiser",
            "vae.scale_factor": "latents = scale_factor * posterior; decode divides by it first",
            "schedule": "betas = linspace(sqrt(linear_start), sqrt(linear_end), timesteps)**2 in float64; stored float32",
            "model_ema": "model_ema.decay / num_updates are written as in the oracle's SD 1 files; an engine must ignore them",
        },
        "diffusers": {"unet": diffusers_unet_config(cfg), "vae": S.diffusers_vae_config(cfg),
                      "text_encoder": clip_text_config(cfg).to_dict(),
                      "text_encoder_note": "transformers CLIPTextModel with all 3 layers: conditioning = "
                                           "final_layer_norm(hidden_states[-2]) (diffusers' SD 2 hub configs drop the "
                                           "last layer instead and use last_hidden_state)",
                      "scheduler_prediction_type": "v_prediction" if args.v else "epsilon"},
        "tensor_counts": counts,
        "file_bytes": size,
        "probe_stats": stats,
        "v_test_statistic": vstat,
        "v_test": {
            "a1111": "modules/sd_models_config.py is_using_v_parameterization_for_sd2(state_dict): builds the FULL "
                     "SD 2 UNet (model_channels 320, channel_mult [1, 2, 4, 4], num_head_channels 64, context_dim 1024), "
                     "load_state_dict(strict=True), float32, CPU; out = (unet(0.5 * ones(1, 4, 8, 8), t=[999], "
                     "context=0.5 * ones(1, 2, 1024)) - x).mean(); returns out < -1",
            "statistic": "the same formula on this tiny UNet (context 0.5 * ones(1, 2, 32)), float32 from the fp16 file",
            "would_return": vstat < -1,
            "applies_to_this_file": False,
            "why": "A1111 only calls the test when in_proj_weight.shape[1] == 1024 (guess_model_config_from_state_dict); "
                   "for this file it is never called (and would fail load_state_dict on the sizes). The .yaml next to "
                   "the file decides: " + ("v2-inference-v.yaml shape, parameterization v" if args.v else
                                            "v2-inference.yaml shape, eps"),
        },
    }
    with open(stem + ".json", "w") as f:
        json.dump(sidecar, f, indent=2, default=list)
    print(f"wrote {stem}.json and {stem}.yaml")

    if not args.no_verify:
        t0 = time.time()
        failures, report = verify(args.out, stem + ".yaml", cfg, expected, dtype, args.ldm_src)
        print(f"verification took {time.time() - t0:.1f}s")
        if failures:
            sys.exit(f"CHECK FAILED: {failures} mismatches")
        sidecar["checks"] = report
        with open(stem + ".json", "w") as f:
            json.dump(sidecar, f, indent=2, default=list)
        print("all checks passed")
    if size >= 15 * 10 ** 6:
        sys.exit(f"{args.out} is {size} bytes (>= 15 MB)")


if __name__ == "__main__":
    main()
