#!/usr/bin/env python3
"""A tiny random kohya LoRA for the committed SD 2 checkpoint (Tests/Fixtures/models/tiny-sd2.safetensors), made as
kohya's sd-scripts names an SD 2 network: `lora_unet_` + the diffusers UNet path and `lora_te_` + the transformers
CLIPTextModel path (sd-scripts trains SD 2 through transformers' CLIP converted from OpenCLIP), "." -> "_".

    REF_VENV/bin/python tools/make_sd2_lora.py --ref REF [--seed 0] \
        [--out Tests/Fixtures/networks/Lora-sd2/tiny_sd2_lora.safetensors]

Modules, values and scale rule are the oracle's make_networks.lora_file (LoRA + LoCon, rank 4, alpha 2, each
update about a quarter of its weight's std) over the SD 2 UNet (diffusers, use_linear_projection: proj_in / proj_out
are Linear) and over transformers' CLIPTextModel built from the file by diffusers' convert_open_clip_checkpoint
(q/k/v/out_proj, fc1, fc2 of every layer). Then the text encoder's layer 1 loses its k_proj and out_proj modules:
A1111 patches OpenCLIP's nn.MultiheadAttention only when a network has all four of its q / k / v / out updates
(extensions-builtin/Lora/networks.py network_apply_weights), so layer 1's q and v updates must change nothing
while its fc1 / fc2 updates apply. Layer 2 is past SD 2's penultimate layer: its updates never reach the
conditioning.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256  # noqa: E402

CKPT = "Tests/Fixtures/models/tiny-sd2.safetensors"
CKPT_SHA256 = "ce601807694be44ce7894dc00ef5f1c9a5e1959575182bcb1a7782f2f94270ce"
DROPPED = ("lora_te_text_model_encoder_layers_1_self_attn_k_proj", "lora_te_text_model_encoder_layers_1_self_attn_out_proj")


def transformers_text_model(SD2, cfg, sd):
    """transformers' CLIPTextModel holding the file's OpenCLIP tower (diffusers' conversion)."""
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextModel
    hf = CLIPTextModel(SD2.clip_text_config(cfg)).eval()
    conv = sfu.convert_open_clip_checkpoint(hf, sd, prefix=SD2.TEXT_PREFIX)
    hf.load_state_dict({k[len("text_model."):] if k.startswith("text_model.") else k: t.float()
                        for k, t in conv.items()}, strict=False)
    return hf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/Fixtures/networks/Lora-sd2/tiny_sd2_lora.safetensors"))
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.ref))
    import torch
    from safetensors.torch import load_file, save_file
    import make_networks as MN
    import make_sd2_checkpoint as SD2
    path = os.path.join(REPO, CKPT)
    if sha256(path) != CKPT_SHA256:
        sys.exit(f"{CKPT}: not the committed file (sha256 {sha256(path)})")
    cfg, te, unet, vae, _ = SD2.load_checkpoint(path)
    hf = transformers_text_model(SD2, cfg, load_file(path))
    g = torch.Generator("cpu").manual_seed(a.seed)
    with torch.no_grad():
        sd = MN.lora_file(unet, hf, g)
    sd = {k: v.to(torch.float32).contiguous() for k, v in sd.items() if k.split(".")[0] not in DROPPED}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    save_file(sd, a.out, metadata={"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v2"})
    modules = {k.split(".")[0] for k in sd}
    te_modules = sorted(m for m in modules if m.startswith("lora_te_"))
    print(f"{os.path.relpath(a.out, REPO)}: {len(modules)} modules ({len(te_modules)} text encoder), {len(sd)} tensors, "
          f"{os.path.getsize(a.out)} bytes, sha256 {sha256(a.out)}")


if __name__ == "__main__":
    main()
