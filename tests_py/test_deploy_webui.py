"""The WebUI of a deployed standard-edition service (`metadata.enable_webservice: true`), opened in
headless Chromium through the controller's gateway at /api/predict/<service>/ — the console's
"View Web App" — with the service token as the password."""
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from conftest import BINARY, MODEL
from test_webui import page  # noqa: F401  (the Chromium fixture)

from selenium.webdriver.common.keys import Keys

NAS = "nas-1.example.internal"


@pytest.fixture(scope="module")
def webui_service():
    d = tempfile.mkdtemp(prefix="atelier-deploy-webui-")
    nas = os.path.join(d, "nas")
    ckpt = os.path.join(nas, "data", "models", "Stable-diffusion")
    os.makedirs(ckpt)
    for ext in (".safetensors", ".yaml", ".json"):
        shutil.copy(MODEL + ext, os.path.join(ckpt, "tiny-sd15" + ext))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"nas": {NAS: nas}, "log_rotate_bytes": 4096}, f)
    spec = {
        "metadata": {"name": "webui_svc", "instance": 1, "enable_webservice": True},
        "containers": [{"image": "eas-registry-vpc.<region>.cr.aliyuncs.com/pai-eas/stable-diffusion-webui:4.2-standard",
                        "script": "./webui.sh --listen --port 8000 --api --filebrowser --data-dir=/code/stable-diffusion-webui/data",
                        "port": 8000}],
        "storage": [{"nfs": {"path": "/data", "server": NAS}, "mount_path": "/code/stable-diffusion-webui/data"}],
    }
    with open(os.path.join(d, "spec.json"), "w") as f:
        json.dump(spec, f)
    ctl = os.path.join(d, "ctl")
    log = open(os.path.join(d, "controller.log"), "w")
    proc = subprocess.Popen([BINARY, "controller", "--data-dir", ctl, "--port", "0", "--port-file", os.path.join(d, "port"),
                             "--config", os.path.join(d, "config.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(d, "port")) or not open(os.path.join(d, "port")).read().strip():
            assert proc.poll() is None and time.time() < deadline, open(log.name).read()
            time.sleep(0.05)
        url = f"http://127.0.0.1:{open(os.path.join(d, 'port')).read().strip()}"
        r = subprocess.run([BINARY, "deploy", os.path.join(d, "spec.json"), "--controller-dir", ctl, "--json"],
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        described = json.loads(r.stdout)
        yield {"url": url, "token": described["token"], "webui": described["endpoints"]["webui"], "nas": nas, "ctl": ctl,
               "log": described["instance_list"][0]["log"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def test_view_web_app_opens_the_webui_under_the_service_prefix_and_generates(webui_service, page):  # noqa: F811
    base = webui_service["webui"]
    assert base.endswith("/api/predict/webui_svc/")
    page.open(base)
    assert page.visible("login") and not page.visible("app")
    page.el("login_password").send_keys(webui_service["token"] + Keys.ENTER)
    page.wait(lambda d: page.visible("app"), 30, "the WebUI after login with the service token")
    assert page.js("return document.getElementById('sd_model_checkpoint').value").startswith("tiny-sd15")
    page.generate_small("a cute dog", 11, "a picture through the gateway")
    # every request the page made went through the service's prefix, none to the gateway's root
    urls = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(base) for u in urls), [u for u in urls if not u.startswith(base)]
    page.shot("through-gateway")


def test_webui_and_api_need_the_service_token_at_the_gateway(webui_service):
    base = webui_service["webui"]
    assert requests.get(base + "sdapi/v1/options", timeout=10).status_code == 401
    assert requests.get(base + "sdapi/v1/options", headers={"Authorization": "wrong"}, timeout=10).status_code == 401
    ok = requests.get(base + "sdapi/v1/options", headers={"Authorization": webui_service["token"]}, timeout=10)
    assert ok.status_code == 200 and "X-Atelier-Instance" in ok.headers
    # the page itself is public (it asks for the token)
    page = requests.get(base, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_logs_show_the_instance_output_follow_new_lines_and_rotate(webui_service):
    base, token, ctl = webui_service["webui"], webui_service["token"], webui_service["ctl"]
    assert requests.get(base + "sdapi/v1/loras", headers={"Authorization": token}, timeout=10).status_code == 200
    r = subprocess.run([BINARY, "services", "logs", "webui_svc", "--controller-dir", ctl], capture_output=True, timeout=30)
    assert r.returncode == 0 and b"==> webui_svc-" in r.stdout and b"GET /sdapi/v1/loras 200" in r.stdout
    follow = subprocess.Popen([BINARY, "services", "logs", "webui_svc", "--follow", "--tail", "1", "--controller-dir", ctl],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        marker = "/sdapi/v1/sd-vae"
        assert requests.get(base + marker.lstrip("/"), headers={"Authorization": token}, timeout=10).status_code == 200
        seen = b""
        deadline = time.time() + 15
        while marker.encode() not in seen and time.time() < deadline:
            ready, _, _ = select.select([follow.stdout], [], [], 0.5)
            if ready:
                seen += os.read(follow.stdout.fileno(), 4096)
        assert marker.encode() in seen, seen[-2000:]
    finally:
        follow.kill()
        follow.wait()
    # past log_rotate_bytes (4 KiB here) the log is copied to .1 and truncated; nothing is lost meanwhile
    for _ in range(80):
        requests.get(base + "sdapi/v1/samplers", headers={"Authorization": token}, timeout=10)
    log = webui_service["log"]
    deadline = time.time() + 10
    while not os.path.exists(log + ".1") and time.time() < deadline:
        time.sleep(0.1)
    assert os.path.exists(log + ".1") and os.path.getsize(log + ".1") >= 4096
    assert os.path.getsize(log) < os.path.getsize(log + ".1") + 4096


def test_rotate_token_keeps_answering_the_old_token_until_it_returns_then_only_the_new_one(webui_service):
    base, old, ctl = webui_service["webui"], webui_service["token"], webui_service["ctl"]
    desc = json.loads(subprocess.run([BINARY, "services", "describe", "webui_svc", "--json", "--controller-dir", ctl],
                                     capture_output=True, timeout=30, check=True).stdout)
    pid = desc["instance_list"][0]["pid"]
    # the token is not on the instance's command line (readable by every local user), and its log is private
    assert old.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()
    assert os.stat(desc["instance_list"][0]["log"]).st_mode & 0o077 == 0
    answers, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            answers.append(requests.get(base + "sdapi/v1/options", headers={"Authorization": old}, timeout=30).status_code)

    t = threading.Thread(target=load)
    t.start()
    try:
        r = subprocess.run([BINARY, "services", "rotate-token", "webui_svc", "--controller-dir", ctl], capture_output=True, timeout=300)
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    # served throughout the roll; the old token is refused only from the moment the new one is
    # committed (the tail end, while the command reports back) — never a 200 after a 401
    first_refused = answers.index(401) if 401 in answers else len(answers)
    assert first_refused > 0 and set(answers[:first_refused]) == {200} and set(answers[first_refused:]) <= {401}, answers
    new = json.loads(subprocess.run([BINARY, "services", "describe", "webui_svc", "--json", "--controller-dir", ctl],
                                    capture_output=True, timeout=30, check=True).stdout)["token"]
    assert new != old
    assert requests.get(base + "sdapi/v1/options", headers={"Authorization": new}, timeout=10).status_code == 200
    assert requests.get(base + "sdapi/v1/options", headers={"Authorization": old}, timeout=10).status_code == 401
