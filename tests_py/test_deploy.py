"""Deploying the seed's EAS JSON specs with `atelier controller` + `atelier deploy` / `atelier services`:
J1 (standard edition) and J2 (API edition) verbatim, on SeaweedFS playing OSS, driven by the real
clients (webuiapi, eas-prediction, boto3); then what an operator does to running services —
an instance killed under load, a rolling update under load, scale, delete, bad specs refused by
JSON path (CLI and REST), and a controller killed and restarted adopting its instances.

One SeaweedFS and one controller serve the whole module (deploy_harness.py). Nothing is skipped:
a missing binary or server fails."""
import base64
import copy
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import time

import pytest
import requests
import webuiapi
from eas_prediction import QueueClient
from PIL import Image

from deploy_harness import (CONTAINER_DATA, J1, J2, PNG_MAGIC, ControllerProcess, load_spec, pid_alive, pid_exists,
                            port_refuses, upload_model, wait_for)
from seaweed import SeaweedS3

BUCKET = "examplebucket"
J1_PREFIX = "data-oss"  # oss://examplebucket/data-oss
J2_PREFIX = "aohai-singapore"  # oss://examplebucket/aohai-singapore/
J1_NAS = "726434****-aws0.ap-southeast-1.nas.aliyuncs.com"
J2_NAS = "0c9624****-fgh60.cn-hangzhou.nas.aliyuncs.com"


def small(seed=1, steps=2, save_dir=None, **extra):
    body = {"prompt": "a cute dog", "steps": steps, "width": 64, "height": 64, "seed": seed}
    if save_dir:
        body["alwayson_scripts"] = {"save_dir": save_dir}
    body.update(extra)
    return body


def object_key(prefix, image_url):
    """The bucket key of an image_url (a container path under the data dir's mount)."""
    assert image_url.startswith(CONTAINER_DATA + "/"), image_url
    return f"{prefix}/{image_url[len(CONTAINER_DATA) + 1:]}"


def assert_png_object(s3_client, key, size=(64, 64)):
    head = s3_client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] > 0
    data = s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert data[:8] == PNG_MAGIC and len(data) == head["ContentLength"]
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.size == size
    return data


def queue(ctl, name, token):
    q = QueueClient(ctl.endpoint, name)
    q.set_token(token)
    q.init()
    q.set_timeout(30000)
    return q


def watch_n(q, n, timeout=90):
    """n frames from a sink watch (each committed), then the watch is closed."""
    got = []
    done = threading.Event()
    watcher = q.watch(0, 5, auto_commit=False)

    def run():
        for x in watcher.run():
            got.append(x)
            q.commit(x.index)
            if len(got) >= n:
                break
        done.set()
    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout), f"only {len(got)} of {n} results arrived on the sink"
    watcher.close()
    return got


def write_spec(spec, directory, name):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(spec if isinstance(spec, str) else json.dumps(spec, indent=2))
    return path


def instance_ids(desc):
    return [i["id"] for i in desc["instance_list"]]


# fixtures: one S3 store, one controller, the seed services deployed once

@pytest.fixture(scope="module")
def s3():
    with SeaweedS3() as server:
        server.create_bucket(BUCKET)
        client = server.client()
        upload_model(client, BUCKET, J1_PREFIX)
        upload_model(client, BUCKET, J2_PREFIX)
        yield server


@pytest.fixture(scope="module")
def s3c(s3):
    return s3.client()


@pytest.fixture(scope="module")
def nas_dirs():
    dirs = {J1_NAS: tempfile.mkdtemp(prefix="atelier-nas1-"), J2_NAS: tempfile.mkdtemp(prefix="atelier-nas2-")}
    yield dirs
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ctl(s3, nas_dirs):
    c = ControllerProcess(s3, nas_dirs)
    c.start()
    yield c
    leftovers = []
    try:
        c.stop()
        # SIGTERM stops every instance (also those adopted from a killed controller)
        try:
            wait_for(lambda: not c.leftover_instances(), 10, interval=0.1, what="no instance process left")
        except AssertionError:
            leftovers = c.leftover_instances()
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    finally:
        log = c.logs(tail=40)
        c.cleanup()
    assert not leftovers, f"instance processes {leftovers} outlived the controller's SIGTERM; its log:\n{log}"


@pytest.fixture(scope="module")
def tmp_specs():
    d = tempfile.mkdtemp(prefix="atelier-specs-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def j1_deploy(ctl):
    """J1 deployed with the file passed unchanged to `atelier deploy` (human-readable output)."""
    r = ctl.cli("deploy", J1)
    assert r.returncode == 0, repr(r) + "\n" + ctl.logs(tail=30)
    return r


@pytest.fixture(scope="module")
def j2_deploy(ctl):
    """J2 deployed with the file passed unchanged to `atelier deploy --json`."""
    r = ctl.cli("deploy", J2, "--json")
    assert r.returncode == 0, repr(r) + "\n" + ctl.logs(tail=30)
    return r


# 1. J1: the standard edition on OSS

def test_j1_verbatim_deploys_on_oss_and_txt2img_through_the_gateway_saves_into_the_bucket(ctl, j1_deploy, s3c, nas_dirs):
    out = j1_deploy.stdout
    assert "name:      sd_v32" in out and "edition:   standard" in out and "status:    Running (1/1 instances running)" in out
    assert f"{ctl.url}/api/predict/sd_v32" in out
    assert "storage:   OSS oss://examplebucket/data-oss" in out
    assert "warning: storage[1].mount_path:" in out and "storage[0] is used" in out, out
    d = ctl.describe("sd_v32")
    assert d["status"] == "Running" and d["edition"] == "standard" and d["running_instances"] == 1
    assert d["endpoints"]["sync"] == f"{ctl.url}/api/predict/sd_v32" and d["mount_path"] == CONTAINER_DATA
    assert f"token:     {d['token']}" in out
    (inst,) = d["instance_list"]
    assert inst["state"] == "running" and pid_alive(inst["pid"])
    token = d["token"]

    # the real webuiapi client, its base URL on the gateway, the service token in its session
    api = webuiapi.WebUIApi(baseurl=f"{ctl.url}/api/predict/sd_v32/sdapi/v1", sampler="Euler a", steps=2)
    api.session.headers["Authorization"] = token
    r = api.txt2img(prompt="a photo of a cat", seed=42, width=64, height=64)
    assert len(r.images) == 1 and r.image.size == (64, 64)
    assert r.info["seed"] == 42 and r.info["hostname"] == inst["id"] and r.info["sd_model_name"] == "tiny-sd15"

    # save_dir under the mount: image_url is a container path, the PNG is in the bucket before the answer
    url = f"{ctl.url}/api/predict/sd_v32/sdapi/v1/txt2img"
    r = requests.post(url, json=small(seed=7, save_dir=f"{CONTAINER_DATA}/outputs/t"), headers={"Authorization": f"Bearer {token}"},
                      timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["X-Atelier-Instance"] == inst["id"]
    p = r.json()["parameters"]
    assert p["status"] == 0 and p["seed"] == "7"
    (image_url,) = p["image_url"].split(",")
    assert image_url.startswith(f"{CONTAINER_DATA}/outputs/t/"), image_url
    assert json.loads(r.json()["info"])["hostname"] == inst["id"]
    data = assert_png_object(s3c, object_key(J1_PREFIX, image_url))
    assert "Seed: 7" in Image.open(io.BytesIO(data)).info["parameters"]
    # the same bytes as the instance's local copy of the data dir
    with open(d["data_dir"] + image_url[len(CONTAINER_DATA):], "rb") as f:
        assert f.read() == data
    # the OSS entry is used: nothing is written into the NAS directory
    assert os.listdir(nas_dirs[J1_NAS]) == []

    # the token is required
    for headers in ({}, {"Authorization": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": token + "x"}):
        r = requests.post(url, json=small(), headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.status_code, r.text)
    assert requests.get(f"{ctl.url}/api/predict/sd_v32/sdapi/v1/options", timeout=30).status_code == 401
    assert requests.get(f"{ctl.url}/api/predict/sd_v32/sdapi/v1/options", headers={"Authorization": token}, timeout=30).status_code == 200


# 2. J2: the API edition's queue

def test_j2_verbatim_queue_puts_get_sink_results_with_their_tags_and_images_in_the_bucket(ctl, j2_deploy, s3c, nas_dirs):
    created = j2_deploy.json()
    assert created["name"] == "sd_async" and created["edition"] == "api" and created["status"] == "Running"
    assert created["queue"]["max_delivery"] == 1 and created["worker_threads"] == 1
    assert any("storage[1].mount_path" in w for w in created["diagnostics"])
    d = ctl.describe("sd_async")
    assert d["endpoints"]["async_input"] == f"{ctl.url}/api/predict/sd_async"
    assert d["endpoints"]["async_sink"] == f"{ctl.url}/api/predict/sd_async/sink"
    assert d["endpoints"]["sync"] == f"{ctl.url}/api/sync/sd_async"
    ids = set(instance_ids(d))
    token = d["token"]

    inq = queue(ctl, "sd_async/sdapi/v1/txt2img", token)
    sink = queue(ctl, "sd_async/sink", token)
    put = {}
    for i in range(3):
        index, request_id = inq.put(json.dumps(small(seed=100 + i, save_dir=f"{CONTAINER_DATA}/outputs/txt2img")),
                                    tags={"task_id": f"j2_{i}"})
        put[f"j2_{i}"] = (int(index), request_id)
    frames = watch_n(sink, 3)
    assert sorted(f.tags["task_id"] for f in frames) == sorted(put)
    for f in frames:
        index, request_id = put[f.tags["task_id"]]
        assert f.index == index and f.tags["requestId"] == request_id
        result = json.loads(f.data)
        params = result["parameters"]
        assert params["status"] == 0 and params["error_msg"] == "", params
        assert params["seed"] == str(100 + int(f.tags["task_id"][3:]))
        assert json.loads(result["info"])["hostname"] in ids
        (image_url,) = params["image_url"].split(",")
        assert image_url.startswith(f"{CONTAINER_DATA}/outputs/txt2img/")
        assert_png_object(s3c, object_key(J2_PREFIX, image_url))
    assert os.listdir(nas_dirs[J2_NAS]) == [], "storage[0] (OSS) is used, not the NAS entry"
    # and its synchronous API
    r = requests.post(f"{ctl.url}/api/sync/sd_async/sdapi/v1/txt2img", json=small(seed=5), headers={"Authorization": token}, timeout=120)
    assert r.status_code == 200 and r.headers["X-Atelier-Instance"] in ids
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).size == (64, 64)


# 8. scale (API edition)

def test_scale_api_edition_to_two_then_back_to_one_shows_two_running_then_one(ctl, j2_deploy):
    before = ctl.describe("sd_async")
    token = before["token"]
    r = ctl.cli("services", "scale", "sd_async", "2")
    assert r.returncode == 0, repr(r)
    d = ctl.describe("sd_async")
    assert d["instances"] == 2 and d["running_instances"] == 2 and d["status"] == "Running", d
    assert len(d["instance_list"]) == 2 and all(i["state"] in ("running", "busy") for i in d["instance_list"])
    assert set(instance_ids(before)) < set(instance_ids(d))
    two = d["instance_list"]

    r = ctl.cli("services", "scale", "sd_async", "1")
    assert r.returncode == 0, repr(r)
    d = ctl.describe("sd_async")
    assert d["instances"] == 1 and d["running_instances"] == 1 and d["status"] == "Running", d
    assert len(d["instance_list"]) == 1 and d["instance_list"][0]["state"] in ("running", "busy")
    removed = [i for i in two if i["id"] not in instance_ids(d)]
    assert len(removed) == 1
    wait_for(lambda: not pid_alive(removed[0]["pid"]), 5, what="the scaled-down instance's process to be gone")
    # still serving
    r = requests.post(f"{ctl.url}/api/sync/sd_async/sdapi/v1/txt2img", json=small(), headers={"Authorization": token}, timeout=120)
    assert r.status_code == 200 and r.headers["X-Atelier-Instance"] == d["instance_list"][0]["id"]


def test_sync_call_waiting_for_an_instance_whose_queued_job_dies_is_served_by_a_live_instance(ctl, j2_deploy):
    """The single instance of sd_async runs a queued job; a synchronous call waits in the gateway for
    it; the instance is killed. The waiting call never reached the dead process, so it must be
    served once the instance is back (the gateway knows the instance died: its queued call failed)."""
    ctl.cli("services", "scale", "sd_async", "1", check=True)
    d = ctl.wait_running("sd_async", count=1)
    token = d["token"]
    inq = queue(ctl, "sd_async/sdapi/v1/txt2img", token)
    index, _ = inq.put(json.dumps(small(seed=77, steps=150)), tags={"task_id": "long"})

    def busy():
        (inst,) = ctl.get("sd_async")["instance_list"]
        return inst if inst["jobs_running"] > 0 else None
    victim = wait_for(busy, 30, interval=0.02, what="the queued job running")
    result = {}

    def call():
        started = time.monotonic()
        r = requests.post(f"{ctl.url}/api/sync/sd_async/sdapi/v1/txt2img", json=small(seed=78), headers={"Authorization": token}, timeout=120)
        result["r"] = (r.status_code, r.text, r.headers.get("X-Atelier-Instance"), time.monotonic() - started)
    t = threading.Thread(target=call, daemon=True)
    t.start()
    wait_for(lambda: ctl.get("sd_async")["waiting_requests"] == 1, 10, interval=0.02, what="the sync call waiting for the instance")
    os.kill(victim["pid"], signal.SIGKILL)
    killed = time.monotonic()
    t.join(timeout=60)
    status, text, instance, took = result["r"]
    # the waiting call must not be handed to the dead process: the failed queued job marks the
    # instance unhealthy before its lease is released, so the call waits for the restarted one
    assert status == 200 and instance == victim["id"], (f"answered {took:.1f} s after it was sent, "
                                                        f"{time.monotonic() - killed:.1f} s after the kill", status, text)
    assert took < 10
    # the killed queued job: J2's queue.max_delivery is 1, so its one failed delivery is its result
    (frame,) = watch_n(queue(ctl, "sd_async/sink", token), 1)
    params = json.loads(frame.data)["parameters"]
    assert frame.index == int(index) and frame.tags["task_id"] == "long"
    assert params["status"] != 0 and "delivered 1 time(s)" in params["error_msg"], params


# 3. an instance killed under load

def test_killed_busy_instance_comes_back_and_every_queued_request_gets_exactly_one_result(ctl, tmp_specs):
    spec = load_spec(J2)
    spec["metadata"]["name"] = "sd_two"
    spec["metadata"]["instance"] = 2
    spec["queue"]["max_delivery"] = 2
    d = ctl.deploy(write_spec(spec, tmp_specs, "sd_two.json"))
    assert d["status"] == "Running" and d["running_instances"] == 2
    token = d["token"]
    inq = queue(ctl, "sd_two/sdapi/v1/txt2img", token)
    sink = queue(ctl, "sd_two/sink", token)

    N = 24
    put = {}
    for i in range(N):
        index, _ = inq.put(json.dumps(small(seed=1000 + i, steps=4)), tags={"task_id": f"two_{i}"})
        put[f"two_{i}"] = int(index)

    sync_results = []  # (started, finished, status, body, instance)
    stop_sync = threading.Event()

    def sync_loop(n):
        session = requests.Session()
        i = 0
        while not stop_sync.is_set():
            started = time.monotonic()
            try:
                r = session.post(f"{ctl.url}/api/sync/sd_two/sdapi/v1/txt2img", json=small(seed=5000 + 100 * n + i, steps=4),
                                 headers={"Authorization": token}, timeout=120)
                body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text
                sync_results.append((started, time.monotonic(), r.status_code, body, r.headers.get("X-Atelier-Instance")))
            except requests.RequestException as e:
                sync_results.append((started, time.monotonic(), None, repr(e), None))
            i += 1
    threads = [threading.Thread(target=sync_loop, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()

    def busy_instance():
        for inst in ctl.describe("sd_two")["instance_list"]:
            if inst["state"] == "busy" or inst["jobs_running"] > 0:
                return inst
        return None
    victim = wait_for(busy_instance, 30, interval=0.02, what="a busy instance")
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.monotonic()

    def back():
        for inst in ctl.describe("sd_two")["instance_list"]:
            if inst["id"] == victim["id"] and inst["state"] in ("running", "busy") and inst["restarts"] >= 1 and inst["pid"] != victim["pid"]:
                return inst
        return None
    revived = wait_for(back, 10, interval=0.1, what=f"the killed instance {victim['id']} running again with a new pid")
    assert pid_alive(revived["pid"]) and not pid_alive(victim["pid"])

    # every queued request ends with exactly one result in the sink
    def all_done():
        q = ctl.get("sd_two")["queue"]
        return q if q["input"]["stream.length"] == "0" and int(q["sink"]["stream.length"]) >= N else None
    wait_for(all_done, 120, interval=0.2, what="the input queue drained and N results in the sink")
    # keep the synchronous load on until some calls finished after the instance came back
    wait_for(lambda: sum(1 for s in list(sync_results) if s[0] > killed_at + 1 and s[2] == 200) >= 2, 60, what="sync calls after the restart")
    stop_sync.set()
    for t in threads:
        t.join(timeout=120)
    wait_for(lambda: all(i["jobs_running"] == 0 for i in ctl.get("sd_two")["instance_list"]), 30, what="the instances idle")
    q = ctl.get("sd_two")["queue"]
    assert q["input"]["stream.length"] == "0" and q["sink"]["stream.length"] == str(N), q
    frames = sink.get(index=0, length=N + 5, timeout="0s", auto_delete=False)
    tags = [f.tags["task_id"] for f in frames]
    assert sorted(tags) == sorted(put), "nothing lost, no duplicates"
    errors = []
    for f in frames:
        assert f.index == put[f.tags["task_id"]]
        result = json.loads(f.data)
        params = result["parameters"]
        if params.get("status", 0) != 0:
            errors.append((f.tags["task_id"], params["error_msg"]))
            assert "delivered 2 time(s)" in params["error_msg"], params
        else:
            assert len(result["images"]) == 1 and params["seed"] == 1000 + int(f.tags["task_id"][4:]), params
    # only the entry in flight on the killed instance (one: rpc.worker_threads 1) may have failed
    assert len(errors) <= 1, f"{len(errors)} queued requests failed after one instance was killed: {errors}"

    # the synchronous API kept answering; a 502 only for a call in flight on the killed instance
    assert sync_results and all(s[2] is not None for s in sync_results), [s for s in sync_results if s[2] is None]
    bad = [s for s in sync_results if s[2] != 200]
    for started, finished, status, body, _ in bad:
        assert status == 502 and isinstance(body, dict) and victim["id"] in body.get("detail", ""), (status, body)
        assert started < killed_at, f"a call started {started - killed_at:.2f} s after the kill got {status}: {body}"
    # a call that was waiting for an instance (never in flight on the killed one) is not sent to
    # the dead port ("Connection refused")
    refused = [(round(s[0] - killed_at, 2), round(s[1] - killed_at, 2), s[3]) for s in bad if "Connection refused" in s[3]["detail"]]
    assert not refused, f"(start, end) s after the kill, answer: {refused}"
    assert len(bad) <= 1, f"{len(bad)} synchronous calls failed: {[s[3] for s in bad]}"
    assert any(s[2] == 200 and s[0] > killed_at for s in sync_results)


# 4. rolling update under load

def test_update_under_load_answers_every_request_and_moves_from_the_old_to_a_new_instance(ctl, j1_deploy, tmp_specs):
    before = ctl.describe("sd_v32")
    token = before["token"]
    old_ids = set(instance_ids(before))
    spec = load_spec(J1)
    spec["cloud"]["computing"]["instance_type"] = "ml.gu7i.c32m188.1-gu30"
    path = write_spec(spec, tmp_specs, "sd_v32-update.json")

    seen = []  # (status, instance, error)
    stop = threading.Event()
    url = f"{ctl.url}/api/predict/sd_v32/sdapi/v1/txt2img"

    def load(n):
        session = requests.Session()
        i = 0
        while not stop.is_set():
            try:
                r = session.post(url, json=small(seed=300 + 50 * n + i), headers={"Authorization": token}, timeout=120)
                seen.append((r.status_code, r.headers.get("X-Atelier-Instance"), None if r.status_code == 200 else r.text))
            except requests.RequestException as e:
                seen.append((None, None, repr(e)))
            i += 1
    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(seen) >= 2, 60, what="requests before the update")
    r = ctl.cli("services", "update", "sd_v32", path)
    assert r.returncode == 0, repr(r)
    after = ctl.describe("sd_v32")
    new_ids = set(instance_ids(after))
    assert new_ids and not (new_ids & old_ids), (old_ids, new_ids)
    wait_for(lambda: sum(1 for s in list(seen) if s[1] in new_ids) >= 2, 60, what="requests answered by the new instance")
    stop.set()
    for t in threads:
        t.join(timeout=120)
    failed = [s for s in seen if s[0] != 200]
    assert not failed, f"{len(failed)} of {len(seen)} requests failed during the update: {failed[:5]}"
    instances = {s[1] for s in seen}
    assert instances & old_ids and instances & new_ids, instances
    assert instances <= old_ids | new_ids
    assert after["status"] == "Running" and after["cloud"]["computing"]["instance_type"] == "ml.gu7i.c32m188.1-gu30"
    for i in before["instance_list"]:
        wait_for(lambda: not pid_alive(i["pid"]), 10, what=f"old instance {i['id']} gone")


# 6. bad specs, refused by JSON path (CLI and REST), leaving nothing behind

def bad_specs():
    j1, j2 = load_spec(J1), load_spec(J2)

    def variant(base, name, change):
        s = copy.deepcopy(base)
        s["metadata"]["name"] = name
        change(s)
        return s
    return [
        ("invalid_json", '{"metadata": {"name": "bad_json",', "$"),
        ("instance_type", variant(j2, "bad_type", lambda s: s["metadata"].__setitem__("instance", "two")), "metadata.instance"),
        ("missing_image", variant(j1, "bad_image", lambda s: s["containers"][0].pop("image")), "containers[0].image"),
        ("missing_script", variant(j1, "bad_script", lambda s: s["containers"][0].pop("script")), "containers[0].script"),
        ("instance_zero", variant(j2, "bad_zero", lambda s: s["metadata"].__setitem__("instance", 0)), "metadata.instance"),
        ("existing_name", j1, "metadata.name"),
        ("mount_outside", variant(j1, "bad_mount", lambda s: s["storage"][0].__setitem__("mount_path", "/mnt/data")),
         "storage[0].mount_path"),
        ("port_mismatch", variant(j1, "bad_port", lambda s: s["containers"][0].__setitem__("port", 8001)), "containers[0].port"),
        ("standard_two", variant(j1, "bad_standard", lambda s: s["metadata"].__setitem__("instance", 2)), "metadata.instance"),
    ]


@pytest.mark.parametrize("case,spec,field", bad_specs(), ids=[c[0] for c in bad_specs()])
def test_bad_spec_is_refused_by_cli_and_rest_naming_the_json_path_and_creates_nothing(ctl, j1_deploy, tmp_specs, case, spec, field):
    names = ctl.list_names()
    dirs = ctl.service_dirs()
    assert "sd_v32" in names
    path = write_spec(spec, tmp_specs, f"bad-{case}.json")
    r = ctl.cli("deploy", path)
    assert r.returncode != 0, repr(r)
    assert f"error: {field}:" in r.output, repr(r)
    assert ctl.list_names() == names and ctl.service_dirs() == dirs

    with open(path, "rb") as f:
        body = f.read()
    r = ctl.rest("POST", "/api/services", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    j = r.json()
    assert field in [e["field"] for e in j["errors"]], j
    assert j["detail"] and all(e["message"] for e in j["errors"])
    assert ctl.list_names() == names and ctl.service_dirs() == dirs


# 5. delete

def test_delete_stops_the_instances_frees_their_ports_and_forgets_the_service(ctl, tmp_specs):
    spec = load_spec(J2)
    spec["metadata"]["name"] = "sd_del"
    spec["metadata"]["instance"] = 2
    d = ctl.deploy(write_spec(spec, tmp_specs, "sd_del.json"))
    assert d["running_instances"] == 2
    token = d["token"]
    r = requests.post(f"{ctl.url}/api/sync/sd_del/sdapi/v1/txt2img", json=small(), headers={"Authorization": token}, timeout=120)
    assert r.status_code == 200
    pids = [i["pid"] for i in d["instance_list"]]
    ports = [i["port"] for i in d["instance_list"]]
    assert all(pid_alive(p) for p in pids)
    assert "sd_del" in ctl.service_dirs()

    r = ctl.cli("services", "delete", "sd_del")
    assert r.returncode == 0 and "deleted sd_del" in r.stdout, repr(r)
    for pid in pids:
        # gone, not even a zombie (the controller reaps its children)
        wait_for(lambda: not pid_exists(pid), 5, what=f"process {pid} gone")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ports:
        assert port_refuses(port), f"port {port} of a deleted instance still accepts connections"
    assert "sd_del" not in ctl.list_names()
    r = ctl.rest("GET", "/api/services/sd_del")
    assert r.status_code == 404 and r.json()["field"] == "name"
    for method, url in [("POST", f"{ctl.url}/api/predict/sd_del/sdapi/v1/txt2img"), ("POST", f"{ctl.url}/api/sync/sd_del/sdapi/v1/txt2img"),
                        ("POST", f"{ctl.url}/api/predict/sd_del")]:
        r = requests.request(method, url, json=small(), headers={"Authorization": token}, timeout=30)
        assert r.status_code == 404, (url, r.status_code, r.text)
    r = ctl.cli("services", "describe", "sd_del")
    assert r.returncode != 0 and "sd_del" in r.output
    # its directory goes too (also while its queue store is still closing its WAL files)
    left = [os.path.relpath(os.path.join(root, f), ctl.dir) for root, _, files in os.walk(os.path.join(ctl.dir, "services", "sd_del"))
            for f in files]
    assert "sd_del" not in ctl.service_dirs(), f"left behind after the delete: {left}"


# 7. controller restart

def test_killed_controller_is_replaced_by_one_that_adopts_the_running_instance(ctl, j1_deploy):
    before = ctl.describe("sd_v32")
    names = ctl.list_names()
    (inst,) = before["instance_list"]
    old_url = ctl.url
    ctl.kill()
    assert pid_alive(inst["pid"]), "SIGKILL of the controller leaves its instances running"
    ctl.start()
    wait_for(lambda: "sd_v32" in ctl.list_names(), 30, what="sd_v32 listed by the new controller")
    after = ctl.wait_running("sd_v32")
    assert ctl.list_names() == names
    (again,) = after["instance_list"]
    assert (again["id"], again["pid"], again["port"]) == (inst["id"], inst["pid"], inst["port"]), "adopted, not restarted"
    assert after["token"] == before["token"]
    assert after["endpoints"]["sync"] == f"{ctl.url}/api/predict/sd_v32"
    if ctl.url != old_url:
        assert port_refuses(int(old_url.rsplit(":", 1)[1]))
    r = requests.post(f"{ctl.url}/api/predict/sd_v32/sdapi/v1/txt2img", json=small(seed=9), headers={"Authorization": before["token"]},
                      timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["X-Atelier-Instance"] == inst["id"]
    assert json.loads(r.json()["info"])["hostname"] == inst["id"]
    assert "adopted running process" in ctl.logs()

