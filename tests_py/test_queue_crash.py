"""Crash safety of the API edition's queue: SIGKILL the service while a job runs and 50 wait,
restart it on the same store, and every request ends with exactly one result in the sink —
the killed one run again (max_delivery 2) or failed with one error result (max_delivery 1).
Run on every queue store (SQLite; PostgreSQL when its fixture provides one)."""
import json
import time

import pytest

from test_queue_sdk import SERVICE, TOKEN, client, small, nothing_delivered, watch_n
from stores import store_flags, STORES


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("max_delivery", [2, 1])
def test_sigkill_mid_job_loses_nothing_and_duplicates_nothing(make_server, request, store, max_delivery):
    flags = ["--edition", "api", "--service-name", SERVICE, "--nowebui", "--token", TOKEN,
             "--max-delivery", str(max_delivery), *store_flags(request, store)]
    s = make_server(*flags)
    inq = client(s, SERVICE)
    killed, killed_rid = inq.put(small(steps=100, seed=4242, width=128, height=128), tags={"task_id": "long"})
    waiting = {int(inq.put(small(seed=i), tags={"task_id": f"t{i}"})[0]): f"t{i}" for i in range(50)}
    deadline = time.time() + 60
    while not inq.search(killed).get("IsPending"):
        assert time.time() < deadline, "the long job never started"
        time.sleep(0.05)
    time.sleep(0.3)
    s.kill()
    assert "done (HTTP" not in s.logs().split("running index " + killed)[-1], "the job finished before the kill"

    s.start()
    sink = client(s, f"{SERVICE}/sink")
    frames = watch_n(sink, 51, window=10, timeout=300)
    assert nothing_delivered(s, f"{SERVICE}/sink"), "a result arrived twice"
    by_index = {}
    for f in frames:
        assert f.index not in by_index, f"index {f.index} delivered twice"
        by_index[f.index] = f
    assert set(by_index) == {int(killed)} | set(waiting), "every request has its result"
    for index, task in waiting.items():
        f = by_index[index]
        assert f.tags["task_id"] == task
        assert json.loads(f.data)["parameters"]["status"] == 0
    long = by_index[int(killed)]
    assert long.tags["requestId"] == killed_rid and long.tags["task_id"] == "long"
    params = json.loads(long.data)["parameters"]
    if max_delivery == 2:
        assert params["status"] == 0 and params["seed"] == "4242", "run again after the crash, and it succeeded"
    else:
        assert params["status"] != 0 and "delivered 1 time" in params["error_msg"], params
    assert client(s, SERVICE).attributes()["stream.length"] == "0"
    assert sink.attributes()["stream.length"] == "0"


def test_sigterm_lets_the_running_job_finish_and_publish_so_a_restart_costs_no_delivery(make_server):
    s = make_server("--edition", "api", "--service-name", SERVICE, "--nowebui", "--token", TOKEN, "--max-delivery", "1")
    inq = client(s, SERVICE)
    running, _ = inq.put(small(steps=60, seed=31, width=128, height=128), tags={"task_id": "running"})
    queued, _ = inq.put(small(seed=32), tags={"task_id": "queued"})
    # an open watch must not hold the stop up
    import websocket
    ws = websocket.create_connection(f"ws://{s.endpoint}/api/predict/{SERVICE}/sink?_watch_=true&_window_=5",
                                     header={"Authorization": TOKEN})
    deadline = time.time() + 60
    while not inq.search(running).get("IsPending"):
        assert time.time() < deadline
        time.sleep(0.05)
    s.proc.terminate()
    assert s.proc.wait(timeout=120) == 0, "a stop exits cleanly once the running job is published"
    ws.abort()
    log = s.logs()
    assert f"queue: index {running} done (HTTP 200)" in log
    assert f"running index {queued}" not in log, "no new job starts after the stop"
    s.start()
    sink = client(s, f"{SERVICE}/sink")
    frames = {f.tags["task_id"]: f for f in watch_n(sink, 2)}
    assert json.loads(frames["running"].data)["parameters"]["status"] == 0
    assert json.loads(frames["queued"].data)["parameters"]["status"] == 0, "the waiting one ran after the restart"
    assert frames["running"].index == int(running) and frames["queued"].index == int(queued)
