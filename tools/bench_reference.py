#!/usr/bin/env python3
"""PyTorch reference timings for `atelier bench --reference-python PY` (run by hand or by the bench).

Same shapes as the Atelier bench: UNet forward batch 2 (cond+uncond) on size/8 latents with a
77-token context, VAE decode/encode of one image, CLIP text encoder on 77 tokens, sgemm 2048^3.
Random weights of the SD 1.5 architecture (timings do not depend on the values); fp32, CPU,
torch.set_num_threads(--threads). Prints one JSON line: {"name", "median_s", "min_s", "max_s", "runs"}.
Needs torch and diffusers (and transformers for the text encoder)."""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--model", default=None, help="ignored (random weights of the same architecture)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h = a.size // 8
    with torch.no_grad():
        if a.what == "matmul":
            x, y = torch.rand(2048, 2048), torch.rand(2048, 2048)
            work = lambda: x @ y  # noqa: E731
        elif a.what in ("unet", "txt2img"):
            from diffusers import UNet2DConditionModel
            unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).eval()
            x, t, ctx = torch.randn(2, 4, h, h), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 768)
            if a.what == "unet":
                work = lambda: unet(x, t, encoder_hidden_states=ctx)  # noqa: E731
            else:
                from diffusers import AutoencoderKL
                vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4).eval()

                def work():
                    for _ in range(20):
                        unet(x, t, encoder_hidden_states=ctx)
                    vae.decode(x[:1])
        elif a.what in ("vae-decode", "vae-encode"):
            from diffusers import AutoencoderKL
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4).eval()
            if a.what == "vae-decode":
                z = torch.randn(1, 4, h, h)
                work = lambda: vae.decode(z)  # noqa: E731
            else:
                img = torch.randn(1, 3, a.size, a.size)
                work = lambda: vae.encode(img)  # noqa: E731
        elif a.what == "text-encoder":
            from transformers import CLIPTextConfig, CLIPTextModel
            te = CLIPTextModel(CLIPTextConfig(hidden_act="quick_gelu", projection_dim=768)).eval()
            ids = torch.full((1, 77), 320)
            work = lambda: te(input_ids=ids)  # noqa: E731
        else:
            raise SystemExit(f"unknown bench {a.what}")
        work()
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            work()
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"name": a.what, "median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "runs": a.runs}))


if __name__ == "__main__":
    main()
