"""The API edition driven by the official `eas-prediction` SDK (PyPI 0.36) and by the seed's own
sample code: puts, priorities, search, watch with a window and manual commit, redelivery on
reconnect, truncate, and the refusals a client must see clearly (eas-queue-protocol.md)."""
import json
import os
import socket
import threading
import time

import pytest
import requests
from eas_prediction import QueueClient
from eas_prediction.exception import PredictException

from stores import STORES, store_flags

TOKEN = "queue-secret"
SERVICE = "sd_async"


def small(prompt="cute dog", seed=1, steps=2, **extra):
    body = {"prompt": prompt, "steps": steps, "width": 64, "height": 64, "seed": seed,
            "alwayson_scripts": {"save_dir": "outputs/txt2img"}}
    body.update(extra)
    return json.dumps(body)


def client(server, name, token=TOKEN, uid=None):
    q = QueueClient(server.endpoint, name)
    q.set_token(token)
    q.init(uid=uid)
    q.set_timeout(20000)
    return q


def watch_n(q, n, window=5, auto_commit=False, commit=True, timeout=120):
    """Collects n frames from a watch (committing each unless told not to), then closes it."""
    got = []
    done = threading.Event()
    watcher = q.watch(0, window, auto_commit=auto_commit)

    def run():
        for x in watcher.run():
            got.append(x)
            if commit and not auto_commit:
                q.commit(x.index)
            if len(got) >= n:
                break
        done.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert done.wait(timeout), f"only {len(got)} of {n} frames arrived"
    watcher.close()
    return got


def nothing_delivered(server, name, seconds=1.5):
    import websocket
    ws = websocket.create_connection(f"ws://{server.endpoint}/api/predict/{name}?_watch_=true&_index_=0&_window_=5",
                                     header={"Authorization": TOKEN}, timeout=seconds)
    try:
        ws.recv()
        return False
    except websocket.WebSocketTimeoutException:
        return True
    finally:
        ws.close()


def empty(q):
    last = int(q.attributes()["stream.lastEntry"])
    q.truncate(last + 1)
    assert q.attributes()["stream.length"] == "0"


@pytest.fixture(scope="module", params=STORES)
def api(request):
    from conftest import Server
    s = Server("--edition", "api", "--service-name", SERVICE, "--nowebui", "--token", TOKEN, *store_flags(request, request.param))
    yield s
    s.stop()


def test_seed_sample_puts_with_requests_then_sdk_watcher_gets_each_result_with_its_task_id(api):
    # §9.1 of the spec, verbatim but for the service URL and the image_link host
    url = f"{api.url}/api/predict/{SERVICE}"
    headers = {"Authorization": TOKEN}
    prompts = ["cute dog", "cute cat", "cute girl"]
    indexes = {}
    for i in range(5):
        p = prompts[i % len(prompts)]
        payload = {"prompt": p, "steps": 2, "width": 64, "height": 64,
                   "alwayson_scripts": {"save_dir": "/code/stable-diffusion-webui/data-oss/outputs/txt2img"}}
        response = requests.post(url=f'{url}/sdapi/v1/txt2img?task_id=txt2img_{i}', json=payload, headers=headers)
        assert response.status_code == 200, response.content
        assert response.content.isdigit()
        indexes[f"txt2img_{i}"] = int(response.content)
    assert sorted(indexes.values()) == list(indexes.values())

    sink_queue = client(api, f"{SERVICE}/sink")
    got = {}
    watcher = sink_queue.watch(0, 5, auto_commit=False)
    for x in watcher.run():
        got[x.tags["task_id"]] = (x.index, json.loads(x.data.decode("utf-8")))
        sink_queue.commit(x.index)
        if len(got) == 5:
            break
    watcher.close()
    for task_id, (index, data) in got.items():
        assert index == indexes[task_id], "the result carries its request's index"
        params = data["parameters"]
        assert params["status"] == 0 and params["error_msg"] == ""
        paths = params["image_url"].split(",")
        assert len(paths) == 1 and paths[0].startswith("/code/stable-diffusion-webui/data-oss/outputs/txt2img/")
        local = os.path.join(api.data, paths[0][len("/code/stable-diffusion-webui/data-oss/"):])
        assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "the image is where image_url says (mount path mapped to the data dir)"
        assert params["seed"].isdigit()


@pytest.fixture(scope="module")
def image_host():
    """A plain HTTP server on loopback serving the committed test images (the seed's OSS URL stand-in)."""
    import functools
    import http.server
    images = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "images")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=images)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_seed_img2img_puts_with_image_link_fetch_the_init_image_and_refuse_local_hosts_by_default(api, image_host):
    url = f"{api.url}/api/predict/{SERVICE}"
    headers = {"Authorization": TOKEN}
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)

    def put(i):
        payload = {"prompt": "cute cat", "steps": 2, "width": 64, "height": 64,
                   "alwayson_scripts": {"save_dir": "/code/stable-diffusion-webui/data-oss/outputs/img2img",
                                        "image_link": f"{image_host}/init-128.png"}}
        response = requests.post(url=f'{url}/sdapi/v1/img2img?task_id=img2img_{i}', json=payload, headers=headers)
        assert response.status_code == 200, response.content
        return int(response.content)

    # A1111's default (api_forbid_local_requests): a loopback host is refused, as an error result
    refused = put(0)
    frame = watch_n(sink, 1)[0]
    assert frame.index == refused and frame.tags["task_id"] == "img2img_0"
    params = json.loads(frame.data)["parameters"]
    assert params["status"] != 0 and "Request to local resource not allowed" in params["error_msg"]
    r = requests.post(f"{api.url}/sdapi/v1/options", json={"api_forbid_local_requests": False}, headers=headers)
    assert r.status_code == 200
    try:
        fetched = put(1)
        frame = watch_n(sink, 1)[0]
        params = json.loads(frame.data)["parameters"]
        assert frame.index == fetched and params["status"] == 0, params
        path = params["image_url"].split(",")[0]
        assert "/outputs/img2img/img2img-images/" in path
        assert os.path.exists(os.path.join(api.data, path[len("/code/stable-diffusion-webui/data-oss/"):]))
    finally:
        requests.post(f"{api.url}/sdapi/v1/options", json={"api_forbid_local_requests": True}, headers=headers)


def test_priority_one_overtakes_waiting_normal_entries_and_search_reports_wait_counts(api):
    inq = client(api, f"{SERVICE}/sdapi/v1/txt2img")
    whole = client(api, SERVICE)
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    # a long first job keeps the single worker busy while the others wait
    first, _ = inq.put(small(steps=30, seed=100), tags={"task_id": "busy"})
    deadline = time.time() + 30
    while not whole.search(first).get("IsPending"):
        assert time.time() < deadline
        time.sleep(0.05)
    normal = [inq.put(small(seed=i), tags={"task_id": f"n{i}"}) for i in range(3)]
    vip, vip_rid = inq.put(small(seed=9), tags={"task_id": "vip", "_priority_": "1"})
    waits = {t: whole.search(int(i)).get("WaitCount") for t, (i, _) in zip(["n0", "n1", "n2"], normal)}
    vip_status = whole.search(int(vip))
    assert vip_status == {"IsPending": False, "WaitCount": 0}
    assert waits == {"n0": 1, "n1": 2, "n2": 3}
    frames = watch_n(sink, 5)
    order = [f.tags["task_id"] for f in frames]
    assert order[0] == "busy" and order[1] == "vip", order
    assert order[2:] == ["n0", "n1", "n2"]
    vip_frame = frames[1]
    assert vip_frame.tags["requestId"] == vip_rid and vip_frame.index == int(vip)
    assert "_priority_" not in vip_frame.tags


def test_watch_window_caps_uncommitted_results_and_a_commit_frees_a_slot(api):
    import websocket
    from eas_prediction.queue_client import DataFrameCodec
    inq = client(api, SERVICE)
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    puts = [int(inq.put(small(seed=i), tags={"task_id": f"w{i}"})[0]) for i in range(4)]
    deadline = time.time() + 60
    while int(sink.attributes()["stream.length"]) < 4:
        assert time.time() < deadline
        time.sleep(0.1)
    ws = websocket.create_connection(f"ws://{api.endpoint}/api/predict/{SERVICE}/sink?_watch_=true&_index_=0&_window_=2"
                                     "&_index_only_=false&_auto_commit_=false",
                                     header={"Authorization": TOKEN, "X-EAS-QueueService-Redis-Uid": "window-test",
                                             "X-EAS-QueueService-Redis-Gid": "eas"}, timeout=2)
    first = [DataFrameCodec.decode(ws.recv()) for _ in range(2)]
    assert [f.index for f in first] == puts[:2]
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()  # the window (2) is full: nothing more until a commit
    assert sink.search(puts[0]) == {"IsPending": True, "WaitCount": 0, "ConsumerId": "eas.window-test"}
    assert sink.search(puts[2]) == {"IsPending": False, "WaitCount": 0}
    sink.commit(puts[0])
    third = DataFrameCodec.decode(ws.recv())
    assert third.index == puts[2] and third.tags["task_id"] == "w2"
    ws.abort()
    # the connection is gone: what it held (w1, w2) is waiting again, ahead of w3
    deadline = time.time() + 10
    while sink.search(puts[1]).get("IsPending"):
        assert time.time() < deadline
        time.sleep(0.05)
    assert sink.search(puts[1]) == {"IsPending": False, "WaitCount": 0}
    assert sink.search(puts[3]) == {"IsPending": False, "WaitCount": 2}
    rest = watch_n(sink, 3)
    assert [f.index for f in rest] == puts[1:]
    assert sink.attributes()["stream.length"] == "0"


def test_reconnect_redelivers_only_the_uncommitted_result_and_search_changes_on_commit(api):
    inq = client(api, SERVICE)
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    puts = [inq.put(small(seed=20 + i), tags={"task_id": f"r{i}"}) for i in range(3)]
    deadline = time.time() + 60
    while int(sink.attributes()["stream.length"]) < 3:
        assert time.time() < deadline
        time.sleep(0.1)
    got = []
    watcher = sink.watch(0, 5, auto_commit=False)
    for x in watcher.run():
        got.append(x)
        if x.tags["task_id"] != "r1":
            sink.commit(x.index)
        if len(got) == 3:
            break
    held = next(f for f in got if f.tags["task_id"] == "r1")
    assert sink.search(held.index)["IsPending"] is True, "delivered and uncommitted: pending while the watcher is open"
    committed = [f.index for f in got if f is not held]
    assert all(sink.search(i) == {} for i in committed)
    watcher.close()
    again = watch_n(sink, 1, window=5)
    assert again[0].index == held.index and dict(again[0].tags) == dict(held.tags) and again[0].data == held.data
    assert sink.search(held.index) == {}
    # nothing of the run is delivered a third time (a raw socket with a read timeout: closing an
    # SDK watcher while its thread waits in recv() makes the SDK reconnect forever)
    assert nothing_delivered(api, f"{SERVICE}/sink")


def test_auto_commit_watch_empties_the_sink_and_get_reads_by_request_id(api):
    inq = client(api, SERVICE)
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    idx, rid = inq.put(small(seed=5), tags={"task_id": "g"})
    deadline = time.time() + 60
    while sink.attributes()["stream.length"] != "1":
        assert time.time() < deadline
        time.sleep(0.1)
    found = sink.get(request_id=rid, auto_delete=False)
    assert [(f.index, f.tags["task_id"]) for f in found] == [(int(idx), "g")]
    assert json.loads(found[0].data)["parameters"]["status"] == 0
    frames = watch_n(sink, 1, auto_commit=True)
    assert frames[0].index == int(idx)
    time.sleep(0.5)
    assert sink.attributes()["stream.length"] == "0"
    assert sink.get(index=0, timeout="0s") == []


def test_truncate_removes_entries_below_the_index_on_a_sink_without_a_worker(api):
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    a = int(sink.put(b"one")[0])
    b = int(sink.put(b"two")[0])
    c = int(sink.put(b"three")[0])
    assert a < b < c
    sink.truncate(c)
    attrs = sink.attributes()
    assert attrs["stream.length"] == "1" and attrs["stream.firstEntry"] == str(c) and attrs["stream.lastEntry"] == str(c)
    assert [f.data for f in sink.get(index=0, timeout="0s")] == [b"three"]
    assert sink.attributes()["stream.length"] == "0"


def test_wrong_token_unknown_queue_and_bad_parameters_are_refused_by_name_and_the_queue_keeps_serving(api):
    bad = client(api, SERVICE, token="wrong")
    with pytest.raises(PredictException) as e:
        bad.put(small())
    assert e.value.code == 401 and b"Authorization" in e.value.message
    r = requests.post(f"{api.url}/api/predict/nope", data=b"{}", headers={"Authorization": TOKEN})
    assert r.status_code == 404 and r.json()["field"] == "path"
    r = requests.post(f"{api.url}/api/predict/{SERVICE}/sdapi/v1/nothing", data=b"{}", headers={"Authorization": TOKEN})
    assert r.status_code == 404 and "/sdapi/v1/nothing" in r.json()["message"]
    r = requests.post(f"{api.url}/api/predict/{SERVICE}/sink/extra", data=b"x", headers={"Authorization": TOKEN})
    assert r.status_code == 404
    q = f"{api.url}/api/predict/{SERVICE}"
    for query, field in [("_search_=true&_index_=abc", "_index_"), ("_index_=-1", "_index_"), ("_length_=0", "_length_"),
                         ("_timeout_=soon", "_timeout_"), ("_attrs_=maybe", "_attrs_")]:
        r = requests.get(f"{q}?{query}", headers={"Authorization": TOKEN})
        assert r.status_code == 400 and r.json()["field"] == field, (query, r.text)
    r = requests.put(f"{q}?_indexes_=1,x", headers={"Authorization": TOKEN})
    assert r.status_code == 400 and r.json()["field"] == "_indexes_"
    r = requests.post(f"{q}?_priority_=high", data=small(), headers={"Authorization": TOKEN})
    assert r.status_code == 400 and r.json()["field"] == "_priority_"
    r = requests.post(q, data=b"x" * (8 * 1024 * 1024 + 1), headers={"Authorization": TOKEN})
    assert r.status_code == 413 and r.json()["field"] == "body"
    # a watch with a bad window or token never upgrades: the SDK's first connection raises
    import websocket
    for url, hdr, status in [(f"ws://{api.endpoint}/api/predict/{SERVICE}/sink?_watch_=true&_window_=-2", TOKEN, 400),
                             (f"ws://{api.endpoint}/api/predict/{SERVICE}/sink?_watch_=true&_window_=2", "nope", 401)]:
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(url, header={"Authorization": hdr})
        assert e.value.status_code == status
    # malformed frames from a client: a text frame and garbage bytes; the watch and queue go on
    ws = websocket.create_connection(f"ws://{api.endpoint}/api/predict/{SERVICE}/sink?_watch_=true&_window_=1",
                                     header={"Authorization": TOKEN})
    ws.send("not a frame")
    ws.send_binary(b"\xff\xfe\x00garbage")
    ws.close()
    raw = socket.create_connection(("127.0.0.1", api.port))
    raw.sendall(b"GET /api/predict/" + SERVICE.encode() + b"/sink?_watch_=true HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                b"Authorization: " + TOKEN.encode() + b"\r\n\r\n\x89\xff\x00\x00")
    raw.close()
    good = client(api, SERVICE)
    idx, _ = good.put(small(seed=77), tags={"task_id": "after"})
    sink = client(api, f"{SERVICE}/sink")
    frames = watch_n(sink, 1)
    assert frames[0].index == int(idx)


def test_a_request_the_worker_refuses_becomes_an_error_result_not_a_retry(api):
    inq = client(api, SERVICE)
    sink = client(api, f"{SERVICE}/sink")
    empty(sink)
    idx, rid = inq.put(json.dumps({"prompt": "x", "steps": 2, "width": 65, "height": 64}), tags={"task_id": "bad"})
    frames = watch_n(sink, 1)
    data = json.loads(frames[0].data)
    assert frames[0].index == int(idx) and frames[0].tags["requestId"] == rid
    assert data["parameters"]["status"] != 0 and "width" in data["parameters"]["error_msg"]
    assert data["error"]["detail"]
