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
