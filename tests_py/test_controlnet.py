"""ControlNet through the API as its clients drive it: webuiapi's ControlNetUnit
(`alwayson_scripts.ControlNet`), the cloud service's example (`alwayson_scripts.controlnet` with
`image_link`, `save_dir`, `image_mask_url`) and the extension's `/controlnet/*` routes, on a real
`atelier serve` with the committed tiny ControlNet (Tests/Fixtures/controlnet)."""
import base64
import datetime
import functools
import http.server
import io
import json
import os
import shutil
import threading

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from conftest import ROOT

FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
CONTROLNET = os.path.join(FIXTURES, "controlnet")
CONTROL_IMAGE = os.path.join(FIXTURES, "images", "control-160x128.png")
# the oracle's case for exactly the request below (tools/make_goldens.py, group controlnet)
GOLDEN = os.path.join(FIXTURES, "golden", "cn-canny-balanced-euler_a")


def add_controlnet(server, name="tiny-controlnet-canny", source="tiny-controlnet-canny.safetensors"):
    d = os.path.join(server.data, "models", "ControlNet")
    os.makedirs(d, exist_ok=True)
    ext = os.path.splitext(source)[1]
    shutil.copy(os.path.join(CONTROLNET, source), os.path.join(d, name + ext))


@pytest.fixture(scope="module")
def cn_server():
    from conftest import Server
    s = Server("--nowebui")
    add_controlnet(s)
    yield s
    s.stop()


def golden_request():
    with open(os.path.join(GOLDEN, "params.json")) as f:
        args = json.load(f)["golden_args"]
    # a fresh alwayson_scripts each call: webuiapi's default dict is shared and keeps earlier units
    return dict(prompt=args["prompt"], negative_prompt=args["negative"], seed=args["seed"], steps=args["steps"],
                cfg_scale=args["cfg"], width=args["width"], height=args["height"], sampler_name=args["sampler"],
                override_settings={"randn_source": "CPU"}, alwayson_scripts={})


def psnr(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_webuiapi_unit_reproduces_the_oracle_picture_and_returns_the_detected_map(cn_server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=cn_server.port)
    assert api.controlnet_version() == 3
    models = api.controlnet_model_list()
    assert len(models) == 1 and models[0].startswith("tiny-controlnet-canny [")
    assert api.controlnet_module_list() == ["none", "canny"]
    unit = webuiapi.ControlNetUnit(image=Image.open(CONTROL_IMAGE), module="canny", model="tiny-controlnet-canny",
                                   resize_mode="Crop and Resize", pixel_perfect=True, threshold_a=100, threshold_b=200)
    r = api.txt2img(**golden_request(), controlnet_units=[unit])
    # the picture, then the unit's detected map (as the extension appends it)
    assert len(r.images) == 2
    ref = Image.open(os.path.join(GOLDEN, "image.png")).convert("RGB")
    assert psnr(r.images[0].convert("RGB"), ref) >= 40
    ref_map = np.asarray(Image.open(os.path.join(GOLDEN, "control_map.png")).convert("RGB"))
    assert np.array_equal(np.asarray(r.images[1].convert("RGB")), ref_map)
    info = r.info["infotexts"][0]
    assert 'ControlNet 0: "Module: canny, Model: tiny-controlnet-canny, Weight: 1.0, Resize Mode: Crop and Resize, ' in info
    assert "Pixel Perfect: True, Control Mode: Balanced" in info

    # without the unit the picture changes; weight 0 gives the plain picture bit for bit
    plain = api.txt2img(**golden_request())
    assert len(plain.images) == 1
    assert plain.image.tobytes() != r.image.tobytes()
    unit.weight = 0
    zero = api.txt2img(**golden_request(), controlnet_units=[unit])
    assert zero.image.tobytes() == plain.image.tobytes()


def test_pth_controlnet_through_the_safe_unpickler_gives_the_same_picture(make_server):
    s = make_server("--nowebui")
    add_controlnet(s, "cn_safetensors")
    add_controlnet(s, "cn_pickled", "tiny-controlnet-canny-pth.pth")
    api = webuiapi.WebUIApi(host="127.0.0.1", port=s.port)
    unit = dict(image=Image.open(CONTROL_IMAGE), module="canny", pixel_perfect=True, resize_mode="Crop and Resize")
    req = dict(golden_request(), steps=4)
    a = api.txt2img(**req, controlnet_units=[webuiapi.ControlNetUnit(model="cn_safetensors", **unit)])
    b = api.txt2img(**req, controlnet_units=[webuiapi.ControlNetUnit(model="cn_pickled", **unit)])
    assert a.image.tobytes() == b.image.tobytes()


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def post(server, body, path="txt2img"):
    return requests.post(f"{server.url}/sdapi/v1/{path}", json=body, timeout=300)


def unit(**kw):
    u = {"enabled": True, "module": "canny", "model": "tiny-controlnet-canny", "image": b64(CONTROL_IMAGE), "pixel_perfect": True}
    u.update(kw)
    return u


def body(*units, **kw):
    b = {"prompt": "a red ball", "steps": 2, "width": 128, "height": 128, "alwayson_scripts": {"controlnet": {"args": list(units)}}}
    b.update(kw)
    return b


@pytest.mark.parametrize("bad, field, words", [
    ({"module": "sobel"}, "module", "module(sobel) not found"),
    ({"module": "depth"}, "module", "not available in Atelier yet"),
    ({"model": "nonexistent_model"}, "model", "model not found"),
    ({"model": "None"}, "model", "not selected any ControlNet Model"),
    ({"image": None}, "image", "no input image"),
    ({"image": "not base64 at all!"}, "image", "base64"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "guidance_start", "guidance_start(0.8) > guidance_end(0.2)"),
    ({"weight": 3}, "weight", "between 0 and 2"),
    ({"control_mode": "Loud"}, "control_mode", "Balanced"),
    ({"resize_mode": "Stretch"}, "resize_mode", "Crop and Resize"),
])
def test_bad_unit_is_a_422_naming_the_field_and_nothing_is_generated(cn_server, bad, field, words):
    r = post(cn_server, body(unit(**bad)))
    assert r.status_code == 422, r.text
    assert f"alwayson_scripts.controlnet.args[0].{field}" in r.text and words in r.text, r.text


def test_forbidden_global_in_a_pth_controlnet_is_refused_by_name_and_never_run(make_server, tmp_path):
    s = make_server("--nowebui")
    add_controlnet(s, "evil", "evil-controlnet.pth")
    marker = "/tmp/atelier-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    r = post(s, body(unit(model="evil")))
    assert r.status_code == 422, r.text
    assert "args[0].model" in r.text and "global 'posix/system' is forbidden" in r.text, r.text
    assert not os.path.exists(marker)
    # the service keeps serving
    assert post(s, {"prompt": "a cat", "steps": 2, "width": 64, "height": 64}).status_code == 200


def test_disabled_and_empty_units_are_ignored(cn_server):
    plain = post(cn_server, {"prompt": "a red ball", "steps": 2, "width": 128, "height": 128, "seed": 3})
    assert plain.status_code == 200
    off = post(cn_server, body(unit(enabled=False), seed=3, alwayson_scripts={"ControlNet": {"args": [unit(enabled=False)]}}))
    assert off.status_code == 200 and off.json()["images"] == plain.json()["images"]
    empty = post(cn_server, dict(body(seed=3), alwayson_scripts={"ControlNet": {"args": []}}))
    assert empty.status_code == 200 and empty.json()["images"] == plain.json()["images"]


def test_detect_runs_the_canny_preprocessor_as_opencv(cn_server):
    src = os.path.join(FIXTURES, "canny", "src-d-photo-128x96.png")
    r = requests.post(f"{cn_server.url}/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [b64(src)], "controlnet_processor_res": 96,
        "controlnet_threshold_a": 100, "controlnet_threshold_b": 200})
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("L"))
    ref = np.asarray(Image.open(os.path.join(FIXTURES, "canny", "canny-d-photo-128x96-l100-h200.png")).convert("L"))
    assert np.array_equal(got, ref)
    bad = requests.post(f"{cn_server.url}/controlnet/detect", json={"controlnet_module": "sobel", "controlnet_input_images": [b64(src)]})
    assert bad.status_code == 422 and "Module not available" in bad.text
    none = requests.post(f"{cn_server.url}/controlnet/detect", json={"controlnet_module": "canny", "controlnet_input_images": []})
    assert none.status_code == 422 and "No image selected" in none.text


@pytest.fixture(scope="module")
def image_host():
    """Plain HTTP on loopback serving the committed images (stand-in for the example's OSS URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.join(FIXTURES, "images"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_seed_controlnet_example_replayed_saves_pictures_and_detected_maps(make_server, image_host):
    # a1111-api.md §14.6 verbatim, but for the image URL (served locally), the model files, which carry
    # the example's names (deliberate_v2 is the tiny checkpoint, control_v11p_sd15_canny the tiny
    # ControlNet), and "steps": 4 (A1111's default 50 at 576² takes minutes on 2 cores even for the tiny model)
    s = make_server("--nowebui", with_model=False)
    s.add_model("deliberate_v2")
    add_controlnet(s, "control_v11p_sd15_canny")
    assert requests.post(f"{s.url}/sdapi/v1/options", json={"api_forbid_local_requests": False}).status_code == 200
    example = {
        "alwayson_scripts": {
            "sd_model_checkpoint": "deliberate_v2.safetensors",
            "save_dir": "/code/stable-diffusion-webui/data-oss/outputs",
            "controlnet": {"args": [{
                "image_link": f"{image_host}/init-128.jpg", "enabled": True, "module": "canny",
                "model": "control_v11p_sd15_canny", "weight": 1, "resize_mode": "Crop and Resize", "low_vram": False,
                "processor_res": 512, "threshold_a": 100, "threshold_b": 200, "guidance_start": 0, "guidance_end": 1,
                "pixel_perfect": True, "control_mode": "Balanced", "input_mode": "simple", "batch_images": "",
                "output_dir": "", "loopback": False}]},
        },
        "prompt": "girls", "batch_size": 1, "n_iter": 2, "width": 576, "height": 576, "negative_prompt": "ugly, out of frame",
        "steps": 4,
    }
    r = post(s, example)
    assert r.status_code == 200, r.text
    out = r.json()
    p = out["parameters"]
    assert out["images"] == [] and p["status"] == 0 and p["error_msg"] == ""
    assert len(p["seed"].split(",")) == 2
    mount = "/code/stable-diffusion-webui/data-oss"
    urls = p["image_url"].split(",")
    masks = p["image_mask_url"].split(",")
    day = datetime.date.today().isoformat()
    assert len(masks) == 2
    assert [m.rsplit("/", 1)[1] for m in masks] == ["00000.png", "00001.png"]
    for m in masks:
        assert m.startswith(f"{mount}/outputs/controlnet_mask/{day}/")
    # the grid of the two pictures first (n_iter 2: one row of two), then the pictures
    assert len(urls) == 3 and f"{mount}/outputs/txt2img-grids/{day}/grid-" in urls[0]
    for path in urls + masks:
        assert path.startswith(mount + "/")
        local = os.path.join(s.data, path[len(mount) + 1:])
        img = Image.open(local)
        assert img.size == ((1152, 576) if path == urls[0] else (576, 576))
    # the detected map is a canny map of the 128² JPEG at pixel-perfect 576: black and white only
    edge = np.asarray(Image.open(os.path.join(s.data, masks[0][len(mount) + 1:])).convert("L"))
    assert set(np.unique(edge)) <= {0, 255} and (edge == 255).any()
