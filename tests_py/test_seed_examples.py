"""The seed document's request examples (a1111-api.md §14.6), replayed against a real `atelier serve`.

Each request body is read verbatim from Tests/Fixtures/seed-requests/ and changed for replay only as
that folder's README says: the model names become the committed tiny models, the image URLs point
at a local HTTP server (same path, loopback origin), and the picture size becomes 64×64 (the
examples' 512/576 pictures take minutes on a couple of CPU cores). The responses must have the
shapes the spec documents: the EAS shape (§14.3) when an EAS key is used, A1111's (§4) otherwise;
features not built yet are a 4xx naming the field."""
import base64
import copy
import datetime
import http.server
import io
import json
import os
import re
import shutil
import threading
import urllib.parse

import pytest
import requests
from PIL import Image

from conftest import ROOT

FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
SEED = os.path.join(FIXTURES, "seed-requests")

# replay mapping (README.md of Tests/Fixtures/seed-requests)
CHECKPOINTS = {"deliberate_v2.safetensors": "tiny-sd15.safetensors"}
CONTROLNETS = {"control_v11p_sd15_canny": "tiny-controlnet-canny"}
LORAS = {"yaeMikoRealistic_Genshin": "tiny_lora"}
# URL path of the example's image → the committed picture served under that path
IMAGES = {
    "/stable-diffusion-cache/tests/boy.png": os.path.join(FIXTURES, "images", "init-128.png"),
    "/pixabay_images/00008b87bf3ff6742b8cf81c358b9dbc.jpg": os.path.join(FIXTURES, "images", "init-128.jpg"),
}
SIZE = 64

MOUNT_DATA = "/code/stable-diffusion-webui/data"
MOUNT_OSS = "/code/stable-diffusion-webui/data-oss"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
DATE = r"\d{4}-\d{2}-\d{2}"
EAS_PARAMETERS = {"id_task", "status", "image_url", "seed", "error_msg", "total_time", "image_mask_url"}


def load(name):
    with open(os.path.join(SEED, name)) as f:
        return json.load(f)


class ImageHost:
    """Loopback HTTP server standing in for the examples' OSS hosts; it remembers the paths asked for."""

    def __init__(self):
        host = self
        self.requested = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                host.requested.append(path)
                if path not in IMAGES:
                    self.send_error(404)
                    return
                with open(IMAGES[path], "rb") as f:
                    data = f.read()
                self.send_response(200)
                self.send_header("Content-Type", "image/png" if path.endswith(".png") else "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def local(self, url):
        return self.origin + urllib.parse.urlsplit(url).path


@pytest.fixture(scope="module")
def image_host():
    h = ImageHost()
    yield h
    h.httpd.shutdown()


@pytest.fixture(scope="module")
def seed_server(server):
    """conftest's server (tiny-sd15) with the tiny ControlNet and LoRA, allowed to fetch from loopback."""
    cn = os.path.join(server.data, "models", "ControlNet")
    os.makedirs(cn, exist_ok=True)
    shutil.copy(os.path.join(FIXTURES, "controlnet", "tiny-controlnet-canny.safetensors"),
                os.path.join(cn, "tiny-controlnet-canny.safetensors"))
    lora = os.path.join(server.data, "models", "Lora")
    os.makedirs(lora, exist_ok=True)
    shutil.copy(os.path.join(FIXTURES, "networks", "Lora", "tiny_lora.safetensors"), lora)
    assert requests.post(f"{server.url}/sdapi/v1/refresh-loras", timeout=60).status_code == 200
    # the image host is on loopback, which A1111's default (api_forbid_local_requests) refuses
    assert requests.post(f"{server.url}/sdapi/v1/options", json={"api_forbid_local_requests": False},
                         timeout=60).status_code == 200
    return server


def replay(body, host):
    """The example as replayed: model names → test models, image URLs → the local host, 64×64."""
    b = copy.deepcopy(body)
    scripts = b.get("alwayson_scripts", {})
    if "sd_model_checkpoint" in scripts:
        scripts["sd_model_checkpoint"] = CHECKPOINTS[scripts["sd_model_checkpoint"]]
    if "image_link" in scripts:
        scripts["image_link"] = host.local(scripts["image_link"])
    for unit in scripts.get("controlnet", {}).get("args", []):
        unit["model"] = CONTROLNETS[unit["model"]]
        unit["image_link"] = host.local(unit["image_link"])
    for old, new in LORAS.items():
        b["prompt"] = b["prompt"].replace(f"<lora:{old}:", f"<lora:{new}:")
    b["width"] = b["height"] = SIZE
    return b


def post(server, path, body):
    return requests.post(f"{server.url}{path}", json=body, timeout=600)


def files_under(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def days_around(call):
    """Runs call(); returns its result and the local dates it may have written (midnight-proof)."""
    before = datetime.date.today().isoformat()
    r = call()
    return r, {before, datetime.date.today().isoformat()}


def assert_same_shape(observed, example, where="response"):
    """Every key of the seed's example response is there, with a value of the same JSON type."""
    for key, value in example.items():
        assert key in observed, f"{where}.{key} missing (seed example has it): {observed}"
        got = observed[key]
        if key == "id_task":
            assert got is None or isinstance(got, str), f"{where}.id_task: {got!r}"
        elif isinstance(value, dict):
            assert isinstance(got, dict), f"{where}.{key}: {got!r}"
            assert_same_shape(got, value, f"{where}.{key}")
        elif isinstance(value, float):
            assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{where}.{key}: {got!r}"
        else:
            assert type(got) is type(value), f"{where}.{key}: {type(got).__name__} {got!r}, example {value!r}"


def assert_eas_response(server, r, *, n, mount, save_dir, kind, days, id_task=None, seeds=None, masks=0, example=None):
    """§14.3 for a request with `save_dir`: images [], the EAS parameters, image_url = grid (n > 1)
    then the n pictures, as `mount` + the path under the data dir (§14.2), each file on disk."""
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"images", "parameters", "info"}, out.keys()
    if example is not None:
        assert_same_shape(out, example)
    p = out["parameters"]
    assert out["images"] == []
    assert EAS_PARAMETERS <= set(p), EAS_PARAMETERS - set(p)
    assert p["id_task"] == id_task
    assert p["status"] == 0 and p["error_msg"] == ""
    assert isinstance(p["total_time"], float) and p["total_time"] >= 0
    assert isinstance(out["info"], str)
    if out["info"]:
        assert isinstance(json.loads(out["info"]), dict)
    got_seeds = p["seed"].split(",")
    assert len(got_seeds) == n and all(s.isdigit() for s in got_seeds), p["seed"]
    got_seeds = [int(s) for s in got_seeds]
    assert got_seeds == list(range(got_seeds[0], got_seeds[0] + n)), "seeds of one job are consecutive"
    if seeds is not None:
        assert got_seeds == seeds
    root = os.path.realpath(server.data)
    where = f"{mount}/{save_dir}" if save_dir else mount

    def on_disk(path):
        assert path.startswith(mount + "/"), f"{path} is not under {mount}"
        local = os.path.join(root, path[len(mount) + 1:])
        assert os.path.isfile(local), f"{path} → {local} does not exist"
        return local

    urls = p["image_url"].split(",") if p["image_url"] else []
    pictures = urls[-n:] if len(urls) >= n else urls
    assert len(pictures) == n, f"{n} pictures expected in image_url: {p['image_url']}"
    for url, seed in zip(pictures, got_seeds):
        m = re.fullmatch(rf"{re.escape(where)}/{kind}-images/({DATE})/\d{{6}}-{UUID4}-{seed}\.png", url)
        assert m and m.group(1) in days, url
        img = Image.open(on_disk(url))
        assert img.size == (SIZE, SIZE)
        assert f"Seed: {seed}," in img.info["parameters"]
    mask_urls = p["image_mask_url"].split(",") if p["image_mask_url"] else []
    assert len(mask_urls) == masks, p["image_mask_url"]
    for url in mask_urls:
        m = re.fullmatch(rf"{re.escape(where)}/controlnet_mask/({DATE})/\d{{5}}\.png", url)
        assert m and m.group(1) in days, url
        assert Image.open(on_disk(url)).size == (SIZE, SIZE)
    assert len(set(mask_urls)) == masks
    # last, so that everything above is checked first: §14.2 "the grid is written when more than one
    # image was generated", §14.3 "image_url: … the grid first (if any), then each image in order"
    if n > 1:
        assert len(urls) == n + 1, f"§14.2/§14.3: {n} images were generated, so image_url must list the grid first, then the {n} pictures: {p['image_url']}"
        m = re.fullmatch(rf"{re.escape(where)}/{kind}-grids/({DATE})/grid-\d{{6}}-{UUID4}\.png", urls[0])
        assert m and m.group(1) in days, urls[0]
        on_disk(urls[0])
    else:
        assert len(urls) == 1
    return out


def assert_a1111_response(r, body, *, n):
    """§4: bare base64 PNGs, parameters = the request echoed (seed stays as sent), info a JSON string."""
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"images", "parameters", "info"}, out.keys()
    assert not (EAS_PARAMETERS - {"seed"}) & set(out["parameters"]), "no EAS key was sent: plain A1111 shape"
    for k, v in body.items():
        assert out["parameters"][k] == v, k
    assert out["parameters"]["seed"] == body.get("seed", -1)
    assert len(out["images"]) == n
    images = []
    for im in out["images"]:
        assert not im.startswith("data:") and "," not in im
        data = base64.b64decode(im, validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(data))
        assert img.size == (body.get("width", 512), body.get("height", 512))
        images.append(img)
    assert isinstance(out["info"], str)
    info = json.loads(out["info"])
    assert len(info["all_seeds"]) == n and info["seed"] == info["all_seeds"][0]
    assert info["all_seeds"] == list(range(info["seed"], info["seed"] + n))
    assert info["index_of_first_image"] == 0 and len(info["infotexts"]) == n
    for img, seed, text in zip(images, info["all_seeds"], info["infotexts"]):
        assert img.info["parameters"] == text and f"Seed: {seed}," in text
    return out, info, images


# ---- plain A1111 examples --------------------------------------------------------------------------

def test_curl_minimal_txt2img_returns_one_bare_base64_png_in_the_a1111_shape(seed_server, image_host):
    body = replay(load("curl-txt2img.json"), image_host)
    out, info, _ = assert_a1111_response(post(seed_server, "/sdapi/v1/txt2img", body), body, n=1)
    assert info["prompt"] == "cut dog " and info["steps"] == 20 and info["sd_model_name"] == "tiny-sd15"


def test_python_example_2_base64_images_carry_the_infotext_png_info_reads_back(seed_server, image_host):
    body = replay(load("python2-base64.json"), image_host)
    out, info, _ = assert_a1111_response(post(seed_server, "/sdapi/v1/txt2img", body), body, n=2)
    for im, text in zip(out["images"], info["infotexts"]):
        # the client's own steps: base64-decode im.split(",", 1)[0], post it as a data URL to png-info
        base64.b64decode(im.split(",", 1)[0], validate=True)
        r = post(seed_server, "/sdapi/v1/png-info", {"image": "data:image/png;base64," + im})
        assert r.status_code == 200, r.text
        got = r.json()
        assert set(got) >= {"info", "items", "parameters"} and "parameters" not in got["items"]
        assert got["info"] == text and got["parameters"]["Prompt"] == "puppy dog"


def test_lora_prompt_example_applies_the_lora_and_saves_the_picture_under_outputs(seed_server, image_host):
    body = replay(load("lora-prompt.json"), image_host)
    assert body["prompt"] == "girls <lora:tiny_lora:1>"
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/txt2img", body))
    out, info, images = assert_a1111_response(r, body, n=1)
    assert 'Lora hashes: "tiny_lora: ' in info["infotexts"][0]
    # save_images: the picture is also written to outputs/txt2img-images/<date>/ (§10), named by its seed
    seed = info["seed"]
    saved = [f for f in files_under(os.path.join(seed_server.data, "outputs", "txt2img-images"))
             if f.endswith(f"-{seed}.png")]
    assert len(saved) == 1, saved
    assert os.path.basename(os.path.dirname(saved[0])) in days
    with open(saved[0], "rb") as f:
        assert f.read() == base64.b64decode(out["images"][0])


# ---- EAS examples (§14.3 shape) --------------------------------------------------------------------

def test_python_example_1_save_dir_lists_grid_then_images_under_the_data_mount(seed_server, image_host):
    body = replay(load("python1-save-dir.json"), image_host)
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/txt2img", body))
    assert_eas_response(seed_server, r, n=2, mount=MOUNT_DATA, save_dir="outputs", kind="txt2img", days=days)


@pytest.mark.parametrize("variant", ["json-body", "curl-without-steps"])
def test_eas_txt2img_example_answers_the_documented_response_shape(seed_server, image_host, variant):
    body = replay(load("eas-txt2img.json"), image_host)
    if variant == "curl-without-steps":
        del body["steps"]  # "The synchronous curl call sends the same body (without steps)"
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/txt2img", body))
    assert_eas_response(seed_server, r, n=2, mount=MOUNT_OSS, save_dir="outputs", kind="txt2img", days=days,
                        example=load("eas-txt2img.response.json"))


def test_async_txt2img_puts_with_task_id_query_each_give_one_saved_picture_and_id_task_null(seed_server, image_host):
    prompts = ["cute dog", "cute cat", "cute girl"]
    for i in range(5):
        body = replay(load("async-txt2img.json"), image_host)
        body["prompt"] = prompts[i % 3]
        # the queue tag travels as a URL parameter; the synchronous server ignores it (§14.4)
        r, days = days_around(lambda: post(seed_server, f"/sdapi/v1/txt2img?task_id=txt2img_{i}", body))
        out = assert_eas_response(seed_server, r, n=1, mount=MOUNT_OSS, save_dir="outputs/txt2img", kind="txt2img",
                                  days=days, example=load("async-sink-2024.response.json"))
        assert_same_shape(out, load("async-sink-2023.response.json"))
        assert json.loads(out["info"])["prompt"] == prompts[i % 3]


def test_async_img2img_puts_fetch_the_image_link_and_save_under_the_img2img_dir(seed_server, image_host):
    for i in range(5):
        body = replay(load("async-img2img.json"), image_host)
        image_host.requested.clear()
        r, days = days_around(lambda: post(seed_server, f"/sdapi/v1/img2img?task_id=img2img_{i}", body))
        assert image_host.requested == ["/stable-diffusion-cache/tests/boy.png"]
        out = assert_eas_response(seed_server, r, n=1, mount=MOUNT_OSS, save_dir="outputs/img2img", kind="img2img",
                                  days=days, example=load("async-sink-2024.response.json"))
        assert json.loads(out["info"])["denoising_strength"] == 0.75


def test_async_request_example_echoes_id_task_and_maps_the_relative_save_dir_to_absolute_paths_in_the_data_dir(
        seed_server, image_host):
    body = replay(load("async-request.json"), image_host)
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/txt2img", body))
    # relative save_dir in → absolute paths inside the data dir out (§14.2)
    root = os.path.realpath(seed_server.data)
    assert_eas_response(seed_server, r, n=2, mount=root, save_dir="tmp/outputs", kind="txt2img", days=days,
                        id_task="14837", example=load("eas-txt2img.response.json"))


def test_eas_img2img_example_as_written_is_a_422_naming_restore_faces_and_saves_nothing(seed_server, image_host):
    body = replay(load("eas-img2img.json"), image_host)
    before = files_under(seed_server.data + "/outputs")
    r = post(seed_server, "/sdapi/v1/img2img", body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert set(err) == {"error", "detail", "body", "errors"}
    assert err["detail"].startswith("restore_faces:") and "not available in Atelier yet" in err["detail"], err
    assert err["errors"] == "422: " + err["detail"]
    assert files_under(seed_server.data + "/outputs") == before


def test_eas_img2img_example_without_face_restoration_gives_seeds_111_112_and_saved_pictures(seed_server, image_host):
    body = replay(load("eas-img2img.json"), image_host)
    body["restore_faces"] = False  # the one feature of the example not built (test above)
    image_host.requested.clear()
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/img2img", body))
    assert image_host.requested == ["/stable-diffusion-cache/tests/boy.png"]
    out = assert_eas_response(seed_server, r, n=2, mount=MOUNT_OSS, save_dir="outputs", kind="img2img", days=days,
                              seeds=[111, 112], example=load("eas-img2img.response.json"))
    info = json.loads(out["info"])
    assert info["sampler_name"] == "DDIM" and info["cfg_scale"] == 7.5 and info["steps"] == 20


def test_eas_img2img_with_the_commented_out_outpainting_script_grows_the_picture_on_all_sides(seed_server, image_host):
    body = replay(load("eas-img2img.json"), image_host)
    body["restore_faces"] = False
    body.update(load("eas-img2img.commented-out.json"))   # Outpainting mk2, 128 px, mask blur 8, all four sides
    # replayed at 256² and 3 steps: at 64² the script's right/down latent rectangle would be
    # negative (A1111 fails such a request too; Atelier answers 422, see the next test)
    body.update(width=256, height=256, steps=3)
    r = post(seed_server, "/sdapi/v1/img2img", body)
    assert r.status_code == 200, r.text
    p = r.json()["parameters"]
    assert p["status"] == 0 and p["error_msg"] == "", p["error_msg"]
    urls = p["image_url"].split(",")
    # n_iter 2: the grid of the two results first, then each; the 128² init grows 128 px per side
    assert len(urls) == 3 and "/outputs/img2img-grids/" in urls[0]
    assert p["seed"] == "111,111"     # the script runs every step with the request's seed
    for u in urls:
        assert u.startswith(MOUNT_OSS + "/outputs/")
        img = Image.open(os.path.join(seed_server.data, u[len(MOUNT_OSS) + 1:]))
        assert img.size == ((768, 384) if u == urls[0] else (384, 384))


def test_outpainting_that_leaves_no_room_for_the_kept_picture_is_a_422_naming_script_args(seed_server, image_host):
    body = replay(load("eas-img2img.json"), image_host)
    body["restore_faces"] = False
    body.update(load("eas-img2img.commented-out.json"))
    r = post(seed_server, "/sdapi/v1/img2img", body)   # 64² with 128 px to the right
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("script_args:") and "no room" in r.json()["detail"]


def test_controlnet_example_saves_pictures_and_detected_maps_and_lists_both(seed_server, image_host):
    body = replay(load("controlnet-txt2img.json"), image_host)
    image_host.requested.clear()
    r, days = days_around(lambda: post(seed_server, "/sdapi/v1/txt2img", body))
    assert image_host.requested == ["/pixabay_images/00008b87bf3ff6742b8cf81c358b9dbc.jpg"]
    out = assert_eas_response(seed_server, r, n=2, mount=MOUNT_OSS, save_dir="outputs", kind="txt2img", days=days,
                              masks=2, example=load("controlnet-txt2img.response.json"))
    info = json.loads(out["info"])
    assert 'ControlNet 0: "Module: canny, Model: tiny-controlnet-canny' in info["infotexts"][0]
