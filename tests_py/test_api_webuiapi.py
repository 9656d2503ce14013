"""The standard edition's A1111 API driven by the real `webuiapi` client (PyPI, pinned)."""
import base64
import io
import json
import os
import threading
import time

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from conftest import ROOT


def client(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a", steps=6)


def test_txt2img_returns_a_png_with_infotext_and_resolved_seed(server):
    api = client(server)
    r = api.txt2img(prompt="a photo of a cat", negative_prompt="lowres", seed=42, width=128, height=128)
    assert len(r.images) == 1 and r.image.size == (128, 128)
    assert r.info["seed"] == 42 and r.info["all_seeds"] == [42]
    assert r.info["sd_model_name"] == "tiny-sd15" and r.info["sd_model_hash"] == "a7caa29fe8"
    assert r.image.info["parameters"] == r.info["infotexts"][0]
    assert "Steps: 6, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 42, Size: 128x128" in r.info["infotexts"][0]
    assert r.parameters["sampler_name"] == "Euler a" and r.parameters["seed"] == 42


def test_same_seed_twice_gives_identical_png_bytes(server):
    api = client(server)
    a = api.txt2img(prompt="a red cube", seed=7, width=64, height=64)
    b = api.txt2img(prompt="a red cube", seed=7, width=64, height=64)
    assert a.json["images"][0] == b.json["images"][0]


def test_batch_of_two_gets_seeds_s_and_s_plus_1(server):
    r = client(server).txt2img(prompt="a tree", seed=1000, batch_size=2, width=64, height=64)
    assert r.info["all_seeds"] == [1000, 1001]
    assert len(r.images) == 2
    assert "Seed: 1001" in r.images[1].info["parameters"]


def test_png_info_round_trip(server):
    api = client(server)
    r = api.txt2img(prompt="a (blue:1.2) bird, sky", negative_prompt="ugly", seed=3, width=64, height=64)
    info = api.png_info(r.image)
    assert info.json["info"] == r.info["infotexts"][0]
    p = info.json["parameters"]
    assert p["Prompt"] == "a (blue:1.2) bird, sky" and p["Negative prompt"] == "ugly"
    assert p["Seed"] == "3" and p["Size-1"] == "64" and p["Size-2"] == "64" and p["Sampler"] == "Euler a"


def test_options_set_get_and_persist(server):
    api = client(server)
    api.set_options({"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337})
    opts = api.get_options()
    assert opts["CLIP_stop_at_last_layers"] == 2 and opts["eta_noise_seed_delta"] == 31337
    saved = json.load(open(os.path.join(server.data, "config.json")))
    assert saved["CLIP_stop_at_last_layers"] == 2
    r = api.txt2img(prompt="x", seed=1, width=64, height=64)
    assert "Clip skip: 2" in r.info["infotexts"][0] and "ENSD: 31337" in r.info["infotexts"][0]
    api.set_options({"CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0})


def test_samplers_schedulers_and_models_are_listed(server):
    api = client(server)
    # exactly A1111 1.10's lists, in its order (webuiapi's helpers sort them; the API's order is A1111's)
    assert [x["name"] for x in requests.get(server.url + "/sdapi/v1/samplers").json()] == [
        "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler", "LMS",
        "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]
    assert [x["name"] for x in requests.get(server.url + "/sdapi/v1/schedulers").json()] == ["automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform",
                                              "kl_optimal", "align_your_steps", "simple", "normal", "ddim", "beta"]
    # options as A1111's pydantic SamplerItem (dict[str, str]) turns its Python values into strings: True -> "True"
    options = {x["name"]: x["options"] for x in requests.get(server.url + "/sdapi/v1/samplers").json()}
    assert options["DPM++ 2M SDE Heun"] == {"scheduler": "exponential", "brownian_noise": "True", "solver_type": "heun"}
    assert options["DPM2 a"] == {"scheduler": "karras", "discard_next_to_last_sigma": "True", "uses_ensd": "True",
                                 "second_order": "True"}
    assert options["Euler"] == {}
    assert "karras" in api.util_get_scheduler_names()
    assert api.util_get_model_names() == ["tiny-sd15.safetensors [a7caa29fe8]"]
    assert api.get_sd_models()[0]["title"] == "tiny-sd15.safetensors [a7caa29fe8]"


def test_progress_shows_a_preview_while_running_and_interrupt_returns_early_images(server):
    api = client(server)
    api.set_options({"show_progress_every_n_steps": 2})
    result = {}

    def run():
        result["r"] = api.txt2img(prompt="slow", seed=9, steps=400, width=128, height=128)

    t = threading.Thread(target=run)
    t.start()
    seen = None
    deadline = time.time() + 120
    while time.time() < deadline:
        p = api.get_progress()
        if p["state"]["sampling_step"] >= 4 and p["current_image"]:
            seen = p
            break
        time.sleep(0.05)
    assert seen is not None, "no progress with a preview"
    assert 0 < seen["progress"] < 1 and seen["state"]["job"] == "scripts_txt2img" and seen["state"]["sampling_steps"] == 400
    preview = Image.open(io.BytesIO(base64.b64decode(seen["current_image"])))
    assert preview.size == (16, 16)
    api.interrupt()
    t.join(timeout=120)
    r = result["r"]
    assert len(r.images) == 1 and r.image.size == (128, 128)
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job"] == ""


def post(server, path, body, **kw):
    return requests.post(server.url + "/sdapi/v1/" + path, data=body if isinstance(body, (bytes, str)) else json.dumps(body), **kw)


def test_bad_input_gets_4xx_naming_the_field_and_the_server_keeps_serving(server):
    r = post(server, "txt2img", {"steps": "abc"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
    r = post(server, "txt2img", {"steps": -1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
    r = post(server, "txt2img", {"width": 100000})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "width"]
    r = post(server, "txt2img", {"sampler_name": "Nope"})
    assert r.status_code == 404 and "sampler_name" in r.json()["detail"]
    # UniPC is of order 3: fewer steps are refused naming the field (A1111 fails an assertion)
    r = post(server, "txt2img", {"sampler_name": "UniPC", "steps": 2})
    assert r.status_code == 422 and "steps" in json.dumps(r.json()) and "UniPC" in json.dumps(r.json())
    r = post(server, "txt2img", b"{not json")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "value_error.jsondecode"
    r = post(server, "txt2img", b"[1, 2]")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "type_error.dict"
    r = post(server, "txt2img", {"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"})
    assert r.status_code == 422 and "hr_upscaler" in r.json()["detail"]
    r = post(server, "txt2img", {"enable_hr": True, "hr_scale": 20})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "hr_scale"]
    r = post(server, "txt2img", {"override_settings": {"sd_model_checkpoint": "missing.safetensors"}})
    assert r.status_code == 404 and "sd_model_checkpoint" in r.json()["detail"]
    r = post(server, "txt2img", {"alwayson_scripts": {"save_dir": "../../etc"}})
    assert r.status_code == 400 and "save_dir" in r.json()["detail"]
    r = post(server, "txt2img", {"alwayson_scripts": {"save_dir": "/etc"}})
    assert r.status_code == 400
    r = post(server, "png-info", {"image": "%%%notbase64"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image"]
    r = post(server, "txt2img", b"x" * (65 << 20))
    assert r.status_code == 413
    r = requests.get(server.url + "/sdapi/v1/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    assert requests.get(server.url + "/internal/ping").json() == {}


def test_eas_save_dir_writes_images_and_returns_their_paths(server):
    body = {"prompt": "a boat", "seed": 11, "steps": 3, "width": 64, "height": 64, "batch_size": 2,
            "alwayson_scripts": {"save_dir": "/code/stable-diffusion-webui/data/outputs", "id_task": "t-1"}}
    r = post(server, "txt2img", body)
    assert r.status_code == 200
    p = r.json()["parameters"]
    assert r.json()["images"] == [] and p["status"] == 0 and p["id_task"] == "t-1" and p["seed"] == "11,12"
    urls = p["image_url"].split(",")
    # the grid first (a1111-api.md §14.3), then each picture
    assert len(urls) == 3 and urls[0].startswith("/code/stable-diffusion-webui/data/outputs/txt2img-grids/")
    assert os.path.basename(urls[0]).startswith("grid-")
    assert all(u.startswith("/code/stable-diffusion-webui/data/outputs/txt2img-images/") for u in urls[1:])
    grid = Image.open(urls[0].replace("/code/stable-diffusion-webui/data", server.data))
    assert grid.size == (128, 64) and "Seed: 11" in grid.info["parameters"]   # round(√2) = 1 row of 2
    local = urls[1].replace("/code/stable-diffusion-webui/data", server.data)
    assert os.path.exists(local) and local.endswith("-11.png")
    assert "Seed: 11" in Image.open(local).info["parameters"]
    assert urls[2].endswith("-12.png")


def test_token_guards_the_api_but_not_ping(make_server):
    s = make_server("--token", "s3cret")
    assert requests.get(s.url + "/internal/ping").status_code == 200
    r = requests.get(s.url + "/sdapi/v1/options")
    assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
    assert requests.get(s.url + "/sdapi/v1/options", headers={"Authorization": "wrong"}).status_code == 401
    assert requests.get(s.url + "/sdapi/v1/options", headers={"Authorization": "s3cret"}).status_code == 200
    assert requests.get(s.url + "/sdapi/v1/options", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    api = webuiapi.WebUIApi(host="127.0.0.1", port=s.port)
    api.session.headers["Authorization"] = "s3cret"
    assert api.txt2img(prompt="x", seed=1, steps=2, width=64, height=64).info["seed"] == 1


def test_api_auth_gives_http_basic(make_server):
    s = make_server("--api-auth", "alice:pw")
    assert requests.get(s.url + "/sdapi/v1/options").status_code == 401
    api = webuiapi.WebUIApi(host="127.0.0.1", port=s.port, username="alice", password="pw")
    assert api.get_options()["CLIP_stop_at_last_layers"] == 1


def test_without_checkpoint_the_api_says_how_to_add_one_and_picks_it_up_without_restart(make_server):
    s = make_server(with_model=False)
    r = post(s, "txt2img", {"prompt": "x", "steps": 2, "width": 64, "height": 64})
    assert r.status_code == 404 and "models/Stable-diffusion" in r.json()["detail"] and "refresh-checkpoints" in r.json()["detail"]
    s.add_model()
    assert post(s, "refresh-checkpoints", {}).status_code == 200
    r = post(s, "txt2img", {"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_img2img_repaints_the_init_image_and_reports_denoising_strength(server):
    api = client(server)
    init = api.txt2img(prompt="a house", seed=21, width=128, height=128).image
    r = api.img2img(images=[init], prompt="a house at night", seed=22, denoising_strength=0.5, width=128, height=128,
                    sampler_name="Euler")
    assert r.image.size == (128, 128)
    assert r.info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in r.info["infotexts"][0]
    assert r.parameters["init_images"] is None
    again = api.img2img(images=[init], prompt="a house at night", seed=22, denoising_strength=0.5, width=128, height=128,
                        sampler_name="Euler")
    assert again.json["images"][0] == r.json["images"][0]
    other = api.img2img(images=[init], prompt="a house at night", seed=22, denoising_strength=0.9, width=128, height=128,
                        sampler_name="Euler")
    assert other.json["images"][0] != r.json["images"][0]


def test_img2img_bad_inpainting_fields_are_named(server):
    api = client(server)
    init = api.txt2img(prompt="x", seed=1, width=64, height=64).image
    b64 = webuiapi.b64_img(init)
    r = post(server, "img2img", {"init_images": [b64], "width": 128, "height": 96, "steps": 2, "seed": 1})
    assert r.status_code == 200 and Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).size == (128, 96)
    r = post(server, "img2img", {"init_images": [b64], "width": 64, "height": 64, "resize_mode": 7})
    assert r.status_code == 422 and "resize_mode" in r.json()["detail"]
    r = post(server, "img2img", {"init_images": [b64], "width": 64, "height": 64, "mask": b64, "inpainting_fill": 9})
    assert r.status_code == 422 and "inpainting_fill" in r.json()["detail"]
    r = post(server, "img2img", {"init_images": [b64], "width": 64, "height": 64, "mask": "not an image"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "mask"]
    r = post(server, "img2img", {"init_images": [b64], "width": 64, "height": 64, "mask": b64, "mask_blur": "soft"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "mask_blur"]
    r = post(server, "img2img", {"init_images": [b64], "width": 128, "height": 128, "mask": b64, "resize_mode": 3})
    assert r.status_code == 422 and "resize_mode" in r.json()["detail"]
    r = post(server, "img2img", {"width": 64, "height": 64})
    assert r.status_code == 404 and r.json()["detail"] == "Init image not found"
    r = post(server, "img2img", {"init_images": ["/9j/4AAQSkZJRg=="], "width": 64, "height": 64})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "init_images"]


def golden_img2img(server, case):
    """Runs a golden img2img / inpainting case through webuiapi with the golden's settings."""
    golden = os.path.join(ROOT, "Tests", "Fixtures", "golden", case)
    with open(os.path.join(golden, "params.json")) as f:
        params = json.load(f)
    a = params["golden_args"]
    init = Image.open(os.path.join(ROOT, a["init_image"]))
    mask = Image.open(os.path.join(ROOT, a["mask"])) if a.get("mask") else None
    extra = {}
    if "mask_blur_x" in a or "mask_blur_y" in a:
        extra = {"mask_blur_x": a.get("mask_blur_x", a.get("mask_blur", 4)), "mask_blur_y": a.get("mask_blur_y", a.get("mask_blur", 4))}
    if a.get("no_mask_round"):
        extra["mask_round"] = False
    api = client(server)
    if extra:
        # fields webuiapi's img2img has no parameter for (mask_blur_x / _y, mask_round) go into its payload
        send = api.post_and_get_api_result
        api.post_and_get_api_result = lambda url, payload, use_async: send(url, {**payload, **extra}, use_async)
    r = api.img2img(
        images=[init], mask_image=mask, prompt=a["prompt"], negative_prompt=a.get("negative", ""), seed=a["seed"],
        steps=a["steps"], cfg_scale=a["cfg"], width=a["width"], height=a["height"], sampler_name=a["sampler"],
        scheduler=a.get("scheduler", "Automatic"), denoising_strength=a["denoising_strength"],
        resize_mode=a.get("resize_mode", 0),
        # an int mask_blur overrides mask_blur_x / _y (as in A1111)
        mask_blur=None if "mask_blur_x" in extra else a.get("mask_blur", 4), inpainting_fill=a.get("inpainting_fill", 1),
        inpaint_full_res=bool(a.get("inpaint_full_res", False)), inpaint_full_res_padding=a.get("inpaint_full_res_padding", 32),
        inpainting_mask_invert=int(bool(a.get("inpainting_mask_invert", False))),
        initial_noise_multiplier=a.get("initial_noise_multiplier", 1),
        # the oracle's eta: 1 for the ancestral samplers, 0 for DDIM / PLMS (webuiapi always sends one)
        eta=a["eta"] if a.get("eta") is not None else (0 if a["sampler"] in ("DDIM", "DDIM CFG++", "PLMS") else 1),
        override_settings={"randn_source": "CPU", **({"sd_model_checkpoint": os.path.basename(a["ckpt"])} if a.get("ckpt") else {})},
        alwayson_scripts={})
    return r, params, init, Image.open(os.path.join(golden, "image.png")).convert("RGB")


@pytest.mark.parametrize("case", ["inpaint-original", "inpaint-fill-onlymasked", "inpaint-latent-noise", "inpaint-invert-blur0",
                                  "inpaint-ddim-original", "inpaint-onlymasked-pad8-euler_a", "inpaint-rgba-mask-dpmpp_2m",
                                  "inpaint-blur2x6-noround-euler", "inpaint-init-160x120"])
def test_inpainting_through_webuiapi_reproduces_the_oracle_and_keeps_unmasked_pixels(server, case):
    r, params, init, ref = golden_img2img(server, case)
    assert r.image.size == ref.size
    got = np.asarray(r.image.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((got - np.asarray(ref, dtype=np.float64)) ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    # pixels the overlay keeps (alpha 255) are the (fitted) init image's, byte for byte
    overlay = np.asarray(Image.open(os.path.join(ROOT, "Tests", "Fixtures", "golden", case, "inpaint_overlay.png")).convert("RGBA"))
    kept = overlay[..., 3] == 255
    assert kept.any() and (got[kept] == overlay[..., :3].astype(np.float64)[kept]).all()
    # A1111's infotext fields for the mask, as the oracle wrote them
    mine, theirs = r.info["infotexts"][0], params["infotext"]
    for field in ("Mask blur", "Mask mode", "Inpaint area", "Masked area padding", "Masked content"):
        ref_field = next((part for part in theirs.split(", ") if part.startswith(field + ":")), None)
        assert (ref_field in mine) if ref_field else (field + ":" not in mine), field


@pytest.mark.parametrize("case", ["i2i-resize-crop", "i2i-resize-fill", "i2i-resize-latent", "i2i-noise-multiplier"])
def test_img2img_resize_modes_and_noise_multiplier_reproduce_the_oracle(server, case):
    r, params, init, ref = golden_img2img(server, case)
    assert init.size == ((160, 120) if case.startswith("i2i-resize") else (128, 128)) and r.image.size == ref.size
    got = np.asarray(r.image.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((got - np.asarray(ref, dtype=np.float64)) ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    info = r.info["infotexts"][0]
    assert ("Noise multiplier: 0.9" in info) == (case == "i2i-noise-multiplier")


def test_sigterm_ends_the_running_job_at_its_next_step_and_exits(make_server):
    s = make_server()
    api = webuiapi.WebUIApi(host="127.0.0.1", port=s.port, sampler="Euler a")
    result = {}

    def run():
        result["r"] = requests.post(s.url + "/sdapi/v1/txt2img", json={"prompt": "x", "seed": 1, "steps": 500, "width": 128, "height": 128})

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while api.get_progress()["state"]["sampling_step"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    s.proc.terminate()
    t.join(timeout=60)
    assert result["r"].status_code == 200 and len(result["r"].json()["images"]) == 1
    assert s.proc.wait(timeout=30) == 0


def test_variation_seed_keeps_the_seed_and_counts_subseeds(server):
    r = client(server).txt2img(prompt="a lamp", seed=30, subseed=70, subseed_strength=0.4, batch_size=2, width=64, height=64)
    assert r.info["all_seeds"] == [30, 30] and r.info["all_subseeds"] == [70, 71] and r.info["subseed_strength"] == 0.4
    assert "Variation seed: 71, Variation seed strength: 0.4" in r.info["infotexts"][1]
    assert r.json["images"][0] != r.json["images"][1]
    plain = client(server).txt2img(prompt="a lamp", seed=30, width=64, height=64, seed_resize_from_w=96, seed_resize_from_h=96)
    assert "Seed resize from: 96x96" in plain.info["infotexts"][0]


NETWORKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "networks")


def test_two_hundred_requests_alternating_with_and_without_a_lora_give_the_fresh_pictures(make_server):
    # the switching test, through the real client: a fresh server's first picture without the LoRA
    # and its first with it are the fresh runs; 200 alternating requests after them must give their bytes
    import shutil
    s = make_server("--nowebui")
    lora_dir = os.path.join(s.data, "models", "Lora")
    os.makedirs(lora_dir, exist_ok=True)
    shutil.copy(os.path.join(NETWORKS, "Lora", "tiny_lora.safetensors"), lora_dir)
    api = client(s)
    args = dict(seed=7, steps=2, width=64, height=64, sampler_name="Euler")
    fresh = {False: api.txt2img(prompt="a red cube", **args).image.tobytes(),
             True: api.txt2img(prompt="a red cube <lora:tiny_lora:0.8>", **args).image.tobytes()}
    assert fresh[False] != fresh[True]
    differing = [i for i in range(200)
                 if api.txt2img(prompt="a red cube <lora:tiny_lora:0.8>" if i % 2 == 0 else "a red cube",
                                **args).image.tobytes() != fresh[i % 2 == 0]]
    assert differing == [], f"{len(differing)} of 200 pictures differ from the fresh ones"


def test_lora_tag_changes_the_picture_names_its_hash_and_is_listed(make_server):
    import shutil
    s = make_server("--nowebui")
    api = client(s)
    plain = api.txt2img(prompt="a photo of a cat", seed=5, steps=4, width=64, height=64)
    lora_dir = os.path.join(s.data, "models", "Lora")
    os.makedirs(lora_dir, exist_ok=True)
    shutil.copy(os.path.join(NETWORKS, "Lora", "tiny_lora.safetensors"), lora_dir)
    # picked up without a restart or refresh
    listed = requests.get(f"{s.url}/sdapi/v1/loras").json()
    assert [l["name"] for l in listed] == ["tiny_lora"]
    # the file's safetensors metadata, as A1111's read_metadata_from_safetensors gives it
    assert listed[0]["metadata"] == {"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1"}
    with_lora = api.txt2img(prompt="a photo of a cat <lora:tiny_lora:0.8>", seed=5, steps=4, width=64, height=64)
    assert with_lora.image.tobytes() != plain.image.tobytes()
    info = with_lora.info["infotexts"][0]
    assert info.startswith("a photo of a cat <lora:tiny_lora:0.8>")
    assert 'Lora hashes: "tiny_lora: ' in info
    # back without the tag: exactly the first picture again (weights restored, no drift)
    again = api.txt2img(prompt="a photo of a cat", seed=5, steps=4, width=64, height=64)
    assert again.image.tobytes() == plain.image.tobytes()
    # a network that does not exist is skipped, as A1111 does
    missing = api.txt2img(prompt="a photo of a cat <lora:nope:1>", seed=5, steps=4, width=64, height=64)
    assert missing.image.tobytes() == plain.image.tobytes()
    r = requests.post(f"{s.url}/sdapi/v1/txt2img", json={"prompt": "a <hypernet:h:1>", "steps": 2, "width": 64, "height": 64})
    assert r.status_code == 422 and "hypernet" in r.json()["detail"]
    r = requests.post(f"{s.url}/sdapi/v1/txt2img", json={"prompt": "a <lora:tiny_lora:lots>", "steps": 2, "width": 64, "height": 64})
    assert r.status_code == 422 and "lots" in r.text


def test_prompt_editing_and_and_change_the_picture_against_their_plain_prompts(server):
    api = client(server)
    cat = api.txt2img(prompt="a photo of a cat", seed=9, steps=6, width=64, height=64).image.tobytes()
    edit = api.txt2img(prompt="a photo of a [cat:dog:3]", seed=9, steps=6, width=64, height=64).image.tobytes()
    composed = api.txt2img(prompt="a photo of a cat AND a dog:0.5", seed=9, steps=6, width=64, height=64).image.tobytes()
    assert len({cat, edit, composed}) == 3


def test_embedding_named_in_the_prompt_is_applied_listed_and_hashed(make_server):
    import shutil
    s = make_server("--nowebui")
    api = client(s)
    plain = api.txt2img(prompt="a photo of tinyemb", seed=3, steps=4, width=64, height=64)
    emb_dir = os.path.join(s.data, "embeddings")
    os.makedirs(emb_dir, exist_ok=True)
    shutil.copy(os.path.join(NETWORKS, "embeddings", "tinyemb.safetensors"), emb_dir)
    shutil.copy(os.path.join(NETWORKS, "embeddings", "tinyemb3.pt"), emb_dir)
    listed = requests.get(f"{s.url}/sdapi/v1/embeddings").json()
    assert listed["loaded"]["tinyemb"]["vectors"] == 2 and listed["loaded"]["tinyemb3"]["vectors"] == 3
    with_emb = api.txt2img(prompt="a photo of tinyemb", seed=3, steps=4, width=64, height=64)
    assert with_emb.image.tobytes() != plain.image.tobytes()
    assert 'TI hashes: "tinyemb: ' in with_emb.info["infotexts"][0]
    assert "tinyemb3" not in with_emb.info["infotexts"][0], "only the embeddings a prompt uses are hashed"


@pytest.mark.parametrize("case", ["hires-latent-euler", "hires-lanczos-resize-dpmpp_2m"])
def test_hires_fix_reproduces_the_oracle_picture_with_a1111_infotext(server, case):
    golden = os.path.join(ROOT, "Tests", "Fixtures", "golden", case)
    with open(os.path.join(golden, "params.json")) as f:
        a = json.load(f)["golden_args"]
    api = client(server)
    r = api.txt2img(prompt=a["prompt"], negative_prompt=a["negative"], seed=a["seed"], steps=a["steps"], cfg_scale=a["cfg"],
                    width=a["width"], height=a["height"], sampler_name=a["sampler"], enable_hr=True,
                    hr_scale=a.get("hr_scale", 2), hr_resize_x=a.get("hr_resize_x", 0), hr_resize_y=a.get("hr_resize_y", 0),
                    hr_upscaler=a["hr_upscaler"], hr_second_pass_steps=a.get("hr_second_pass_steps", 0),
                    denoising_strength=a["denoising_strength"], override_settings={"randn_source": "CPU"}, alwayson_scripts={})
    ref = Image.open(os.path.join(golden, "image.png")).convert("RGB")
    assert r.image.size == ref.size
    diff = np.asarray(r.image.convert("RGB"), dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    mse = float(np.mean(diff ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    info = r.info["infotexts"][0]
    assert f"Size: {a['width']}x{a['height']}" in info   # the first pass's size, as A1111 writes it
    assert f"Denoising strength: {a['denoising_strength']}" in info and f"Hires upscaler: {a['hr_upscaler']}" in info
    if a.get("hr_resize_x"):
        assert f"Hires resize: {a['hr_resize_x']}x{a['hr_resize_y']}" in info
    else:
        assert f"Hires upscale: {float(a['hr_scale'])}" in info


@pytest.mark.parametrize("case", ["plms", "ddim_cfgpp", "lcm", "restart-8", "dpm_fast-eta0", "unipc"])
def test_more_samplers_are_listed_and_reproduce_the_oracle_picture(server, case):
    golden = os.path.join(ROOT, "Tests", "Fixtures", "golden", case)
    with open(os.path.join(golden, "params.json")) as f:
        a = json.load(f)["golden_args"]
    names = [s["name"] for s in requests.get(server.url + "/sdapi/v1/samplers").json()]
    assert a["sampler"] in names
    r = client(server).txt2img(prompt=a["prompt"], negative_prompt=a.get("negative", ""), seed=a["seed"], steps=a["steps"],
                               cfg_scale=a["cfg"], width=a["width"], height=a["height"], sampler_name=a["sampler"],
                               scheduler=a.get("scheduler", "Automatic"), override_settings={"randn_source": "CPU"},
                               eta=0, alwayson_scripts={})   # webuiapi sends eta=1.0 unless told
    ref = Image.open(os.path.join(golden, "image.png")).convert("RGB")
    diff = np.asarray(r.image.convert("RGB"), dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    mse = float(np.mean(diff ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    assert f"Sampler: {a['sampler']}" in r.info["infotexts"][0]


def test_vae_file_is_listed_chosen_per_request_and_named_in_the_infotext(make_server):
    s = make_server()
    golden = os.path.join(ROOT, "Tests", "Fixtures", "golden", "vae-file-euler")
    with open(os.path.join(golden, "params.json")) as f:
        a = json.load(f)["golden_args"]
    api = client(s)
    assert requests.get(s.url + "/sdapi/v1/sd-vae").json() == []
    # dropped in while the server runs: found without a restart
    import shutil
    shutil.copy(os.path.join(ROOT, a["vae"]), os.path.join(s.data, "models", "VAE", "tiny-vae-ft.safetensors"))
    listed = requests.get(s.url + "/sdapi/v1/sd-vae").json()
    assert [v["model_name"] for v in listed] == ["tiny-vae-ft.safetensors"]

    def run(**kw):
        return api.txt2img(prompt=a["prompt"], negative_prompt=a["negative"], seed=a["seed"], steps=a["steps"], cfg_scale=a["cfg"],
                           width=a["width"], height=a["height"], sampler_name=a["sampler"], alwayson_scripts={}, **kw)
    r = run(override_settings={"randn_source": "CPU", "sd_vae": "tiny-vae-ft.safetensors"})
    ref = Image.open(os.path.join(golden, "image.png")).convert("RGB")
    diff = np.asarray(r.image.convert("RGB"), dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    mse = float(np.mean(diff ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    assert "Model: tiny-sd15, VAE hash: 45f0710e87, VAE: tiny-vae-ft.safetensors" in r.info["infotexts"][0]
    assert r.info["sd_vae_name"] == "tiny-vae-ft.safetensors" and r.info["sd_vae_hash"] == "45f0710e87"
    # the checkpoint's own VAE gives another picture and no VAE fields
    own = run(override_settings={"randn_source": "CPU", "sd_vae": "None"})
    assert own.image.tobytes() != r.image.tobytes() and "VAE" not in own.info["infotexts"][0]
    # the setting, then a name that does not exist (a 422 naming the field, not a silent fallback)
    assert requests.post(s.url + "/sdapi/v1/options", json={"sd_vae": "tiny-vae-ft.safetensors"}).status_code == 200
    assert "VAE: tiny-vae-ft.safetensors" in run(override_settings={"randn_source": "CPU"}).info["infotexts"][0]
    bad = post(s, "txt2img", {"prompt": "x", "steps": 2, "width": 64, "height": 64, "override_settings": {"sd_vae": "nope.pt"}})
    assert bad.status_code == 422 and "override_settings.sd_vae" in bad.json()["detail"]
    bad = requests.post(s.url + "/sdapi/v1/options", json={"sd_vae": "nope.pt"})
    assert bad.status_code == 422 and "sd_vae" in bad.json()["detail"]


@pytest.mark.parametrize("case", ["inpmodel-inpaint-euler", "inpmodel-img2img-euler"])
def test_inpainting_checkpoint_reproduces_the_oracle_and_says_so_in_the_infotext(make_server, case):
    import shutil
    s = make_server()
    for ext in (".safetensors", ".yaml", ".json"):
        shutil.copy(os.path.join(ROOT, "Tests", "Fixtures", "models", "tiny-sd15-inpainting" + ext),
                    os.path.join(s.data, "models", "Stable-diffusion", "tiny-sd15-inpainting" + ext))
    r, params, init, ref = golden_img2img(s, case)
    got = np.asarray(r.image.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((got - np.asarray(ref, dtype=np.float64)) ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    assert "Conditional mask weight: 1.0" in r.info["infotexts"][0] and "Model: tiny-sd15-inpainting" in r.info["infotexts"][0]
    assert r.info["is_using_inpainting_conditioning"] is True


def a1111_upscale(img, scale, resample):
    """A1111's Upscaler.upscale with a Pillow resample (UpscalerLanczos / UpscalerNearest), in Pillow itself."""
    dest_w, dest_h = int((img.width * scale) // 8 * 8), int((img.height * scale) // 8 * 8)
    for i in range(3):
        if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
            break
        shape = img.size
        img = img.resize((int(img.width * scale), int(img.height * scale)), resample=resample)
        if shape == img.size:
            break
    if img.size != (dest_w, dest_h):
        img = img.resize((dest_w, dest_h), resample=Image.LANCZOS)
    return img


def test_extras_upscale_as_a1111_with_pillow_and_keeps_the_infotext(server):
    api = client(server)
    src = api.txt2img(prompt="a boat", seed=40, width=128, height=96, steps=3).image
    r = api.extra_single_image(image=src, upscaler_1="Lanczos", upscaling_resize=2)
    assert r.image.size == (256, 192)
    assert np.array_equal(np.asarray(r.image.convert("RGB")), np.asarray(a1111_upscale(src.convert("RGB"), 2, Image.LANCZOS)))
    assert r.json["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"
    png = Image.open(io.BytesIO(base64.b64decode(r.json["image"])))
    assert png.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert "Seed: 40" in png.info["parameters"]            # the picture's own infotext travels with it
    # to a size, cropped, with a second upscaler blended in
    r = api.extra_single_image(image=src, resize_mode=1, upscaling_resize_w=200, upscaling_resize_h=120, upscaling_crop=True,
                               upscaler_1="Nearest", upscaler_2="Lanczos", extras_upscaler_2_visibility=0.25)
    scale = max(200 / 128, 120 / 96)
    a, b = a1111_upscale(src.convert("RGB"), scale, Image.NEAREST), a1111_upscale(src.convert("RGB"), scale, Image.LANCZOS)
    def crop(img):
        out = Image.new("RGB", (200, 120))
        out.paste(img, box=(200 // 2 - img.width // 2, 120 // 2 - img.height // 2))
        return out
    ref = Image.blend(crop(a), crop(b), 0.25)
    assert r.image.size == (200, 120) and np.array_equal(np.asarray(r.image.convert("RGB")), np.asarray(ref))
    assert r.json["html_info"] == ("<p>Postprocess upscale to: 200x120, Postprocess crop to: 200x120, "
                                   "Postprocess upscaler: Nearest, Postprocess upscaler 2: Lanczos</p>")
    # a batch, and no upscaler at all (the picture comes back as it is)
    r = api.extra_batch_images(images=[src, src], upscaler_1="Lanczos", upscaling_resize=1.5)
    assert [im.size for im in r.images] == [(192, 144), (192, 144)]
    r = api.extra_single_image(image=src, upscaler_1="None")
    assert r.image.size == (128, 96) and r.json["html_info"] == "<p></p>"
    # bad input names the field
    b64 = webuiapi.b64_img(src)
    for body, field in (({"image": b64, "upscaler_1": "R-ESRGAN 4x+"}, "upscaler_1"),
                        ({"image": b64, "upscaler_1": "Lanczos", "gfpgan_visibility": 0.5}, "gfpgan_visibility"),
                        ({"image": b64, "upscaler_1": "Lanczos", "upscaling_resize": 9}, "upscaling_resize"),
                        ({"image": "not an image", "upscaler_1": "Lanczos"}, "image")):
        bad = post(server, "extra-single-image", body)
        assert bad.status_code == 422 and field in json.dumps(bad.json()), (field, bad.text)


def golden_args(case):
    with open(os.path.join(ROOT, "Tests", "Fixtures", "golden", case, "params.json")) as f:
        return json.load(f)["golden_args"]


def run_golden_through_webuiapi(server, case, overrides=None, **extra):
    """A golden txt2img / img2img case through webuiapi (CPU noise as the oracle's, `overrides` added to
    override_settings, `extra` passed to the client); asserts the oracle's picture within 40 dB."""
    a = golden_args(case)
    common = dict(prompt=a["prompt"], negative_prompt=a.get("negative", ""), seed=a["seed"], steps=a["steps"],
                  cfg_scale=a["cfg"], width=a["width"], height=a["height"], sampler_name=a["sampler"],
                  scheduler=a.get("scheduler", "Automatic"), override_settings={"randn_source": "CPU", **(overrides or {})},
                  alwayson_scripts={}, **extra)
    if "init_image" in a:
        init = Image.open(os.path.join(ROOT, a["init_image"]))
        r = client(server).img2img(images=[init], denoising_strength=a["denoising_strength"], resize_mode=0, **common)
    else:
        r = client(server).txt2img(**common)
    ref = Image.open(os.path.join(ROOT, "Tests", "Fixtures", "golden", case, "image.png")).convert("RGB")
    diff = np.asarray(r.image.convert("RGB"), dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    mse = float(np.mean(diff ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    return r


@pytest.mark.parametrize("case", ["dpmpp_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde", "dpm_adaptive", "dpmpp_2m_sde-eta05",
                                  "i2i-dpmpp_2m_sde", "i2i-unipc"])
def test_sde_samplers_dpm_adaptive_and_unipc_reproduce_the_oracle_picture(server, case):
    """The SDE samplers' Brownian-tree noise (torchsde's, seeded by the image seed), DPM adaptive and UniPC
    (img2img) through the real client: the oracle's picture within 40 dB, eta in the infotext only when it is
    not 1."""
    a = golden_args(case)
    names = [s["name"] for s in requests.get(server.url + "/sdapi/v1/samplers").json()]
    assert a["sampler"] in names
    r = run_golden_through_webuiapi(server, case, eta=a.get("eta", 1.0))
    info = r.info["infotexts"][0]
    assert f"Sampler: {a['sampler']}" in info
    assert ("Eta: 0.5" in info) == (a.get("eta") == 0.5)


@pytest.mark.parametrize("case,infotext", [
    ("euler-churn", ["Sigma churn: 0.5"]),
    ("heun-churn-window", ["Sigma churn: 1.0", "Sigma tmin: 0.5", "Sigma tmax: 5.0"]),
    ("dpmpp_2m-karras-sigmas", ["Schedule min sigma: 0.1", "Schedule max sigma: 10.0", "Schedule rho: 5.0"]),
    ("euler-discard", ["Discard penultimate sigma: True"]),
])
def test_sampler_options_from_override_settings_reproduce_the_oracle_picture(server, case, infotext):
    """A1111's sampler options (churn, s_noise, schedule sigma/rho overrides, discarding the penultimate sigma)
    given as override_settings: the oracle's picture within 40 dB and A1111's infotext entries."""
    golden = os.path.join(ROOT, "Tests", "Fixtures", "golden", case)
    with open(os.path.join(golden, "params.json")) as f:
        a = json.load(f)["golden_args"]
    names = ("s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho", "always_discard_next_to_last_sigma")
    overrides = {"randn_source": "CPU", **{k: a[k] for k in names if k in a}}
    r = client(server).txt2img(prompt=a["prompt"], negative_prompt=a.get("negative", ""), seed=a["seed"], steps=a["steps"],
                               cfg_scale=a["cfg"], width=a["width"], height=a["height"], sampler_name=a["sampler"],
                               scheduler=a.get("scheduler", "Automatic"), override_settings=overrides,
                               eta=a.get("eta", 1.0), alwayson_scripts={})
    ref = Image.open(os.path.join(golden, "image.png")).convert("RGB")
    diff = np.asarray(r.image.convert("RGB"), dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    mse = float(np.mean(diff ** 2))
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 40
    info = r.info["infotexts"][0]
    for entry in infotext:
        assert entry in info


def test_sampler_options_are_checked_and_a_request_field_is_applied_without_infotext(server):
    # out of range: 422 naming the option
    r = post(server, "txt2img", {"steps": 2, "width": 64, "height": 64, "override_settings": {"s_churn": -1}})
    assert r.status_code == 422 and "override_settings.s_churn" in json.dumps(r.json())
    r = post(server, "txt2img", {"steps": 2, "width": 64, "height": 64, "s_noise": "loud"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "s_noise"]
    # a rho near 0 overflows the Karras schedule: a 4xx naming it, and the server keeps serving
    r = post(server, "txt2img", {"steps": 3, "width": 64, "height": 64, "sampler_name": "DPM++ 2M",
                                 "override_settings": {"rho": 0.001}})
    assert r.status_code == 422 and "override_settings.rho" in json.dumps(r.json())
    r = post(server, "txt2img", {"steps": 3, "width": 64, "height": 64, "sampler_name": "DPM++ SDE",
                                 "override_settings": {"rho": 0.001}})
    assert r.status_code == 422 and "override_settings.rho" in json.dumps(r.json())
    r = requests.post(server.url + "/sdapi/v1/options", json={"sigma_min": -1}, timeout=30)
    assert r.status_code == 422 and "sigma_min" in r.text
    # A1111 applies the request's s_churn but writes "Sigma churn" only for the setting
    base = dict(prompt="a cube", seed=5, steps=4, width=128, height=128, sampler_name="Euler", override_settings={"randn_source": "CPU"})
    plain = client(server).txt2img(**base, alwayson_scripts={})
    churned = client(server).txt2img(**base, s_churn=0.5, alwayson_scripts={})
    assert np.asarray(plain.image).tobytes() != np.asarray(churned.image).tobytes()
    assert "Sigma churn" not in churned.info["infotexts"][0]
    # Euler a takes no s_noise in A1111 (not in its sampler_extra_params): same picture, nothing written
    ea = dict(base, sampler_name="Euler a")
    one = client(server).txt2img(**ea, alwayson_scripts={})
    noisy = client(server).txt2img(**dict(ea, override_settings={"randn_source": "CPU", "s_noise": 0.5}), alwayson_scripts={})
    assert np.asarray(one.image).tobytes() == np.asarray(noisy.image).tobytes()
    assert "Sigma noise" not in noisy.info["infotexts"][0]


def test_a_picture_above_768_decodes_in_tiles_with_the_whole_pictures_statistics_unless_set_to_each_tiles(server):
    api = client(server)
    base = dict(prompt="a lighthouse", seed=5, steps=1, width=800, height=800, sampler_name="Euler")
    exact = np.asarray(api.txt2img(**base).image, dtype=np.float64)
    assert api.get_options()["atelier_vae_tile_statistics"] == "exact"
    # each tile's own GroupNorm statistics: a close but different picture (tones shift per tile)
    per_tile = np.asarray(api.txt2img(**base, override_settings={"atelier_vae_tile_statistics": "tile"}).image, dtype=np.float64)
    mse = np.mean((exact - per_tile) ** 2)
    assert mse > 0 and 10 * np.log10(255.0 ** 2 / mse) > 25
    # the setting gives the same picture as the per-request override, and is checked
    api.set_options({"atelier_vae_tile_statistics": "tile"})
    try:
        assert np.array_equal(np.asarray(api.txt2img(**base).image, dtype=np.float64), per_tile)
    finally:
        api.set_options({"atelier_vae_tile_statistics": "exact"})
    r = requests.post(server.url + "/sdapi/v1/options", json={"atelier_vae_tile_statistics": "fast"}, timeout=30)
    assert r.status_code == 422 and "atelier_vae_tile_statistics" in r.text
    r = post(server, "txt2img", {"steps": 1, "width": 64, "height": 64, "override_settings": {"atelier_vae_tile_statistics": 1}})
    assert r.status_code == 422 and "override_settings.atelier_vae_tile_statistics" in json.dumps(r.json())


@pytest.mark.parametrize("case,how", [("tiling-euler_a", "field"), ("tiling-dpmpp_2m-128x96", "field"),
                                      ("i2i-tiling-euler", "override_settings")])
def test_tiling_reproduces_the_oracle_picture_by_field_or_setting(server, case, how):
    """A1111's Tiling (circular padding in every UNet and VAE conv): webuiapi's `tiling=True`, or the `tiling`
    setting through override_settings (A1111's `p.tiling = opts.tiling` when the field is left null), gives the
    oracle's picture within 40 dB and "Tiling: True" in the infotext."""
    overrides = {"tiling": True} if how == "override_settings" else {}
    # webuiapi sends tiling=False unless told: None leaves the field null, so the setting applies
    r = run_golden_through_webuiapi(server, case, overrides=overrides, eta=1.0, tiling=True if how == "field" else None)
    assert "Tiling: True" in r.info["infotexts"][0]


def test_tiling_off_by_field_wins_over_the_setting_and_a_bad_value_is_named(server):
    body = {"prompt": "a red cube", "seed": 5, "steps": 2, "width": 64, "height": 64}
    plain = post(server, "txt2img", body).json()
    off = post(server, "txt2img", {**body, "tiling": False, "override_settings": {"tiling": True}}).json()
    on = post(server, "txt2img", {**body, "override_settings": {"tiling": True}}).json()
    assert off["images"] == plain["images"] and "Tiling" not in json.loads(off["info"])["infotexts"][0]
    assert on["images"] != plain["images"] and "Tiling: True" in json.loads(on["info"])["infotexts"][0]
    r = post(server, "txt2img", {**body, "override_settings": {"tiling": "sometimes"}})
    assert r.status_code == 422 and "override_settings.tiling" in json.dumps(r.json())
    r = post(server, "txt2img", {**body, "tiling": "sometimes"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tiling"]


def test_eta_settings_resolve_per_pass_so_a_hires_pass_with_ddim_gets_eta_ddim(server):
    """No request eta: each pass's sampler takes the setting of its kind (A1111's Sampler.initialize), so a
    hires pass with another sampler writes its own entry; a request eta is used by both."""
    body = {"prompt": "a red cube", "seed": 7, "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler a",
            "enable_hr": True, "hr_scale": 1.5, "hr_sampler_name": "DDIM", "denoising_strength": 0.6,
            "override_settings": {"eta_ancestral": 0.6, "eta_ddim": 0.3}}
    r = post(server, "txt2img", body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])["infotexts"][0]
    assert "Eta: 0.6, Eta DDIM: 0.3" in info and "Hires sampler: DDIM" in info
    r = post(server, "txt2img", {**body, "eta": 0.8})
    info = json.loads(r.json()["info"])["infotexts"][0]
    assert "Eta: 0.8, Eta DDIM: 0.8" in info
