"""The command line: `atelier bench` keeps working (one run on the tiny model, no reference)."""
import json
import os
import subprocess

from conftest import BINARY, MODEL

TINY = MODEL + ".safetensors"


def bench(what, *extra):
    out = subprocess.run([BINARY, "bench", what, "--model", TINY, "--runs", "1", "--size", "128", "--json", *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_bench_reports_time_work_rss_and_a_null_reference():
    for what in ("unet", "vae-decode", "vae-encode", "text-encoder", "load", "matmul"):
        r = bench(what)
        assert r["name"] == what and r["median_s"] > 0 and r["peak_rss_bytes"] > 0
        assert r["reference_median_s"] is None and r["ratio"] is None
        assert r["sgemm_gflops"] > 0
        if what in ("unet", "vae-decode", "vae-encode"):
            assert r["gflop"] > 0 and 0 < r["fraction_of_sgemm"]


def test_the_unet_keeps_its_buffers_between_forwards_and_a_decode_lets_its_go():
    # BufferPool.oneOffPhase: the final decode's sizes do not recur in the step loop, so the pool
    # keeps at most 256 MB of them while it runs and frees them after it; the UNet's stay
    assert bench("unet", "--runs", "2")["fresh_buffers_per_run"] == 0
    assert bench("vae-decode", "--runs", "2")["fresh_buffers_per_run"] > 0


def test_vae_decode_bench_in_tiles_reports_how_far_the_tiled_picture_is_from_the_whole_decode():
    # 256² in tiles of 16 latents (2 × 2, each region 26 of the 32 latents): the whole picture's
    # GroupNorm statistics give the whole decode up to float rounding; each tile's own give a
    # close but different picture
    def tiled(*extra):
        out = subprocess.run([BINARY, "bench", "vae-decode", "--model", TINY, "--runs", "1", "--size", "256", "--json",
                              "--tile", "16", *extra], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    exact = tiled()
    assert exact["tile"] == 16 and exact["tile_statistics"] == "exact" and exact["whole_decode_s"] > 0
    assert exact["tiled_vs_whole_psnr_db"] >= 90
    own = tiled("--tile-statistics", "tile")
    assert 20 <= own["tiled_vs_whole_psnr_db"] < 60
    out = subprocess.run([BINARY, "bench", "vae-decode", "--model", TINY, "--tile", "8", "--tile-statistics", "fast"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "--tile-statistics" in out.stderr


def test_txt2img_bench_allocates_no_tensor_buffer_after_the_first_step():
    r = bench("txt2img")
    assert r["name"] == "txt2img" and r["median_s"] > 0
    # BufferPool: steps 2…N reuse the buffers step 1 freed
    assert r["fresh_buffers_steps_2_to_n"] == 0
    assert r["fresh_buffers_per_run"] >= 0 and r["page_faults_per_run"] >= 0
    # the executable's malloc counter (CMallocCount) counts every call, the Swift runtime's included:
    # Euler keeps its latents, denoised and noise buffers across steps, the CFG denoiser its UNet
    # batches (KSamplers, CFGDenoiser), so steps 2…N make none
    assert r["sampler"] == "Euler" and r["malloc_calls_steps_2_to_n"] == 0


def test_every_sampler_makes_no_malloc_call_after_its_first_step():
    # every sampler updates its latents in place, on one and two threads (the SDE samplers' Brownian
    # noise is computed before the first step; DPM fast and adaptive report fewer steps than asked
    # for, and are counted up to their last)
    for threads in ("1", "2"):
        for sampler in ("Euler a", "DPM++ 2M", "Heun", "DPM2", "DPM2 a", "LMS", "DPM++ 2S a", "Restart", "LCM",
                        "DDIM", "DDIM CFG++", "PLMS", "UniPC", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE",
                        "DPM fast", "DPM adaptive"):
            r = bench("txt2img", "--threads", threads, "--sampler", sampler)
            assert r["sampler"] == sampler
            assert r["malloc_calls_steps_2_to_n"] == 0, f"{sampler}, {threads} threads"


def test_bench_rejects_an_unknown_sampler_and_a_reference_for_another_sampler():
    out = subprocess.run([BINARY, "bench", "txt2img", "--model", TINY, "--sampler", "Euler b"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--sampler: no sampler named Euler b" in out.stderr
    out = subprocess.run([BINARY, "bench", "txt2img", "--model", TINY, "--sampler", "Heun", "--reference-python", "python3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "the reference bench samples with Euler" in out.stderr


def test_a_unet_forward_makes_no_malloc_call_on_one_or_two_threads():
    # the executable defines malloc & co. and counts every call, the Swift runtime's included. The
    # warm-up fills the buffer pool, the interned shapes and each thread's scratch; of the timed
    # forwards the one with the fewest calls is compared, since a pool thread that ran no part of a
    # kernel during the warm-up grows its scratch the first time it does
    for threads in ("1", "2"):
        r = bench("unet", "--runs", "3", "--threads", threads)
        assert r["malloc_calls_fewest_run"] == 0, f"{threads} threads"


def test_the_controlnet_step_bench_counts_the_nets_work_and_no_allocation():
    net = os.path.join(os.path.dirname(TINY), "..", "controlnet", "tiny-controlnet-canny.safetensors")
    out = subprocess.run([BINARY, "bench", "unet", "--model", TINY, "--runs", "3", "--size", "128", "--json",
                          "--controlnet", net], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, controlled = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert plain["name"] == "unet" and controlled["name"] == "unet+controlnet"
    # the ControlNet runs the UNet's encoder and middle block again, plus its zero convs
    assert controlled["gflop"] > plain["gflop"]
    # neither step allocates (the fewest of three, as above): the ControlNet writes its residuals into
    # the caller's list
    assert plain["malloc_calls_fewest_run"] == 0 and controlled["malloc_calls_fewest_run"] == 0


def test_txt2img_with_a_controlnet_unit_makes_no_malloc_call_after_the_first_step():
    net = os.path.join(os.path.dirname(TINY), "..", "controlnet", "tiny-controlnet-canny.safetensors")
    for threads in ("1", "2"):
        # "ControlNet is more important" runs the net on the cond rows only and pads its residuals
        for mode in ("Balanced", "ControlNet is more important"):
            r = bench("txt2img", "--threads", threads, "--controlnet", net, "--control-mode", mode)
            # ControlSession keeps each unit's residuals, their sum and the stacked hint from call to call
            assert r["malloc_calls_steps_2_to_n"] == 0 and r["fresh_buffers_steps_2_to_n"] == 0, f"{mode}, {threads} threads"


def test_malloc_backtraces_name_the_allocating_frames_of_a_run():
    # no sampler's steps 2…N allocate, so a txt2img's third step has no backtrace to write
    out = subprocess.run([BINARY, "bench", "txt2img", "--model", TINY, "--runs", "1", "--size", "128", "--json",
                          "--threads", "1", "--malloc-backtraces"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "@@malloc" not in out.stderr
    # a decode does allocate (its one-off phase lets go of its buffers and takes them again): a
    # backtrace per allocation call of the last run, most of them naming the engine's own frames
    out = subprocess.run([BINARY, "bench", "vae-decode", "--model", TINY, "--runs", "2", "--size", "128", "--json",
                          "--threads", "1", "--malloc-backtraces"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    blocks = out.stderr.split("@@malloc\n")[1:]
    # (the counter also counts what backtrace() itself may allocate the first time, which it does not trace)
    assert 0 < len(blocks) <= r["malloc_calls_last_run"] <= len(blocks) + 4
    assert sum("atelier" in b for b in blocks) * 2 >= len(blocks)


def test_conv_bench_compares_im2col_and_winograd_at_each_shape_class():
    out = subprocess.run([BINARY, "bench", "conv", "--runs", "1", "--size", "128", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert len(rows) == 7 and all(r["name"] == "conv" and r["im2col_median_s"] > 0 for r in rows)
    shapes = {r["shape"]: r for r in rows}
    # at --size 128 the UNet's 320-channel level is 16² × batch 2: 32 tiles of 4×4, too few for F(4×4),
    # but 128 of 2×2 for F(2×2); 640 channels at 8² have 32 of those (im2col); the VAE's 128-channel
    # layer at 128² has 1024 tiles of 4×4
    assert shapes["unet 320ch 16²"]["winograd"] == "F(2x2)" and shapes["unet 320ch 16²"]["winograd_median_s"] > 0
    assert shapes["unet 640ch 8²"]["winograd"] is None and shapes["unet 640ch 8²"]["winograd_median_s"] is None
    assert shapes["vae 128ch 128²"]["winograd"] == "F(4x4)" and shapes["vae 128ch 128²"]["winograd_median_s"] > 0


def test_bench_reports_the_lora_patch_and_the_hires_step_next_to_the_plain_step():
    lora = os.path.join(os.path.dirname(TINY), "..", "networks", "Lora", "tiny_lora.safetensors")
    out = subprocess.run([BINARY, "bench", "unet", "--model", TINY, "--runs", "1", "--size", "128", "--json",
                          "--lora", lora, "--hires-scale", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in map(json.loads, out.stdout.strip().splitlines())}
    plain, patch, hires = rows["unet"], rows["lora-patch"], rows["hires-step"]
    assert patch["modules"] > 0 and patch["median_s"] > 0 and patch["restore_median_s"] > 0
    assert patch["plain_median_s"] == plain["median_s"] and patch["extra_over_plain"] > 0
    assert hires["size"] == 256 and hires["plain_size"] == 128 and hires["ratio_to_plain_step"] > 1
    out = subprocess.run([BINARY, "bench", "unet", "--model", TINY, "--runs", "1", "--size", "128", "--hires-scale", "9"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "--hires-scale" in out.stderr


def test_generate_writes_a_png_with_infotext(tmp_path):
    out = tmp_path / "x.png"
    r = subprocess.run([BINARY, "generate", "--model", TINY, "--prompt", "a cat", "--seed", "3", "--steps", "4",
                        "-W", "64", "-H", "64", "--sampler", "DPM++ 2M", "--scheduler", "Karras", "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"Sampler: DPM++ 2M, Schedule type: Karras" in data


def test_generate_gives_the_same_picture_for_any_thread_count_and_vector_width(tmp_path):
    """The GEMM sums each element in one order whatever the thread split or the tile width, so a
    seed gives one picture: 1, 2 or 3 threads, and 512-bit tiles or not (ATELIER_AVX512=0)."""
    pictures = []
    for threads, avx512 in [("1", None), ("2", None), ("3", None), ("2", "0")]:
        out = tmp_path / f"t{threads}-{avx512}.png"
        env = dict(os.environ)
        if avx512 is not None:
            env["ATELIER_AVX512"] = avx512
        r = subprocess.run([BINARY, "generate", "--model", TINY, "--prompt", "a red cube", "--seed", "11", "--steps", "3",
                            "-W", "256", "-H", "256", "--threads", threads, "--output", str(out)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        pictures.append(out.read_bytes())
    assert all(p == pictures[0] for p in pictures[1:])


def test_generate_names_the_bad_field():
    r = subprocess.run([BINARY, "generate", "--model", TINY, "-W", "100"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--width" in r.stderr and "multiple of 8" in r.stderr
    r = subprocess.run([BINARY, "generate", "--model", TINY, "--sampler", "Nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--sampler" in r.stderr


def test_generate_with_hires_fix_reproduces_the_oracle_picture(tmp_path):
    import numpy as np
    from PIL import Image
    golden = os.path.join(os.path.dirname(TINY), "..", "golden", "hires-latent-euler")
    out = tmp_path / "hires.png"
    r = subprocess.run([BINARY, "generate", "--model", TINY, "--prompt", "a photo of a cat", "--seed", "1", "--steps", "6",
                        "-W", "128", "-H", "128", "--sampler", "Euler", "--randn-source", "CPU", "--enable-hr",
                        "--hr-scale", "1.5", "--hr-upscaler", "Latent", "--denoising-strength", "0.6", "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    mine = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    ref = np.asarray(Image.open(os.path.join(golden, "image.png")).convert("RGB"), dtype=np.float64)
    assert mine.shape == ref.shape == (192, 192, 3)
    mse = float(np.mean((mine - ref) ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    assert b"Hires upscale: 1.5, Hires upscaler: Latent" in out.read_bytes()
    bad = subprocess.run([BINARY, "generate", "--model", TINY, "--enable-hr", "--hr-upscaler", "ESRGAN"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--hr-upscaler" in bad.stderr


def test_generate_inpaints_only_the_masked_area_as_the_oracle(tmp_path):
    import numpy as np
    from PIL import Image
    fixtures = os.path.join(os.path.dirname(TINY), "..")
    golden = os.path.join(fixtures, "golden", "inpaint-fill-onlymasked")
    out = tmp_path / "inpaint.png"
    r = subprocess.run([BINARY, "generate", "--model", TINY, "--prompt", r"a photo of a (cat:1.2), [blurry] masterpiece, \(escaped\)",
                        "--negative-prompt", "lowres, bad anatomy", "--seed", "47", "--steps", "20", "-W", "128", "-H", "128",
                        "--sampler", "Euler a", "--randn-source", "CPU", "--denoising-strength", "0.8",
                        "--init-image", os.path.join(fixtures, "images", "init-128.png"),
                        "--mask", os.path.join(fixtures, "images", "mask-128.png"), "--mask-blur", "4",
                        "--inpainting-fill", "0", "--inpaint-full-res", "--inpaint-full-res-padding", "32", "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    mine = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    ref = np.asarray(Image.open(os.path.join(golden, "image.png")).convert("RGB"), dtype=np.float64)
    mse = float(np.mean((mine - ref) ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    assert b"Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Masked content: fill" in out.read_bytes()
    bad = subprocess.run([BINARY, "generate", "--model", TINY, "--mask", os.path.join(fixtures, "images", "mask-128.png")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--init-image" in bad.stderr
    bad = subprocess.run([BINARY, "generate", "--model", TINY, "--init-image", os.path.join(fixtures, "images", "init-128.png"),
                          "--inpainting-fill", "7"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--inpainting-fill" in bad.stderr
