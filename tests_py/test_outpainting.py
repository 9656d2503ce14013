"""img2img's "Outpainting mk2" script through the API, against the oracle's generation of A1111
1.10.1's own script (Tests/Fixtures/outpaint/golden, tools/make_outpaint_golden.py)."""
import base64
import io
import json
import os

import numpy as np
import requests
from PIL import Image

from conftest import ROOT

GOLDEN = os.path.join(ROOT, "Tests", "Fixtures", "outpaint", "golden", "outpaint-mk2-left-up-euler_a")


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def golden_request():
    params = json.load(open(os.path.join(GOLDEN, "params.json")))
    q = params["request"]
    body = {"prompt": q["prompt"], "negative_prompt": q["negative"], "seed": q["seed"], "steps": q["steps"], "cfg_scale": q["cfg"],
            "sampler_name": q["sampler"], "scheduler": q["scheduler"], "width": q["width"], "height": q["height"],
            "denoising_strength": q["denoising_strength"], "batch_size": q["batch_size"], "n_iter": q["n_iter"],
            "init_images": [b64(os.path.join(GOLDEN, "init.png"))],
            "script_name": "Outpainting mk2", "script_args": params["script_args"],
            # the oracle draws CPU noise (A1111's default is GPU, i.e. NV)
            "override_settings": {"randn_source": "CPU"}}
    return params, body


def psnr(a, b):
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_outpainting_left_and_up_gives_the_oracles_picture(server):
    params, body = golden_request()
    r = requests.post(server.url + "/sdapi/v1/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["images"]) == 1
    got = Image.open(io.BytesIO(base64.b64decode(out["images"][0]))).convert("RGB")
    want = Image.open(os.path.join(GOLDEN, "out-0.png")).convert("RGB")
    assert got.size == want.size == (128, 64)     # 64x48 grown 64 px left and 16 px up
    # float32 engine vs the oracle (see the golden's float32_vs_float64 distances): ≥ 40 dB, and the
    # kept picture (bottom right, outside every repainted band and its blur) byte for byte
    assert psnr(got, want) >= 40, psnr(got, want)
    info = json.loads(out["info"])
    # A1111 reports the first step's infotext for every picture (its Size is that step's)
    first = params["steps"][0]["infotext"]
    assert info["infotexts"][0].startswith(first.split("\nSteps:")[0])
    assert "Size: 128x64" in info["infotexts"][0] and "Mask blur: 16" in info["infotexts"][0] and "Seed: 42" in info["infotexts"][0]


def test_outpainting_script_args_are_checked_by_position(server):
    _, body = golden_request()
    for args, field in [(["", 16, 4, ["left"]], "script_args"), (["", 16.5, 4, ["left"], 1, 0.05], "script_args[1]"),
                        (["", 16, 4, [], 1, 0.05], "script_args[3]"), (["", 16, 4, ["left"], 9, 0.05], "script_args[4]")]:
        r = requests.post(server.url + "/sdapi/v1/img2img", json={**body, "script_args": args}, timeout=60)
        assert r.status_code == 422, (args, r.text)
        assert field in r.text, (args, r.text)


def test_outpainting_on_a_batch_returns_the_grid_first_and_each_picture(server):
    _, body = golden_request()
    body.update({"batch_size": 2, "steps": 2, "script_args": ["", 8, 4, ["right"], 1.0, 0.05]})
    r = requests.post(server.url + "/sdapi/v1/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    imgs = [Image.open(io.BytesIO(base64.b64decode(x))) for x in r.json()["images"]]
    assert [i.size for i in imgs] == [(256, 48), (128, 48), (128, 48)]   # grid of the two, then each (64 → 128 wide)
    # far from the new edge (img2img blurs the mask with σ = 4 × 4 = 16 px, whose overlay reaches
    # ~46 px into the kept side of the edge at x = 60) the pictures are the init's own pixels
    init = np.asarray(Image.open(os.path.join(GOLDEN, "init.png")).convert("RGB"))
    for im in imgs[1:]:
        assert (np.asarray(im.convert("RGB"))[:, :10] == init[:, :10]).all()
    assert not (np.asarray(imgs[1].convert("RGB"))[:, 70:] == np.asarray(imgs[1].convert("RGB"))[:, 70:].mean()).all()
