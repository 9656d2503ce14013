"""An OSS data dir's model copy: models uploaded to the bucket later are found without a restart,
a changed object (new ETag) replaces the local copy, and the size bound leaves files out."""
import json
import os
import shutil
import tempfile

import pytest
import requests

from conftest import MODEL
from deploy_harness import ControllerProcess, wait_for
from seaweed import SeaweedS3

BUCKET = "cachebucket"
PREFIX = "cache-data"
SPEC = {
    "metadata": {"name": "cache_svc", "instance": 1},
    "containers": [{"image": "eas-registry-vpc.<region>.cr.aliyuncs.com/pai-eas/stable-diffusion-webui:4.2-standard",
                    "script": "./webui.sh --listen --port 8000 --nowebui --data-dir=/code/stable-diffusion-webui/data", "port": 8000}],
    "storage": [{"oss": {"path": f"oss://{BUCKET}/{PREFIX}", "readOnly": False}, "mount_path": "/code/stable-diffusion-webui/data"}],
}


@pytest.fixture(scope="module")
def service():
    with SeaweedS3() as s3:
        s3.create_bucket(BUCKET)
        client = s3.client()
        for ext in (".safetensors", ".yaml", ".json"):
            client.upload_file(MODEL + ext, BUCKET, f"{PREFIX}/models/Stable-diffusion/tiny-sd15{ext}")
        # 20 MiB bound: the 13 MB tiny model fits once, not twice
        ctl = ControllerProcess(s3, {}, oss_cache_mb=20, oss_sync_seconds=0.5)
        ctl.start()
        d = tempfile.mkdtemp(prefix="atelier-cache-spec-")
        try:
            spec = os.path.join(d, "spec.json")
            with open(spec, "w") as f:
                json.dump(SPEC, f)
            r = ctl.cli("deploy", spec, "--json")
            assert r.returncode == 0, repr(r)
            desc = json.loads(r.stdout)
            yield {"ctl": ctl, "s3": client, "token": desc["token"], "base": f"{ctl.url}/api/predict/cache_svc",
                   "cache": desc["data_dir"]}
        finally:
            ctl.stop()
            ctl.cleanup()
            shutil.rmtree(d, ignore_errors=True)


def models(svc):
    r = requests.get(svc["base"] + "/sdapi/v1/sd-models", headers={"Authorization": svc["token"]}, timeout=10)
    assert r.status_code == 200, r.text
    return [m["model_name"] for m in r.json()]


def test_a_model_uploaded_later_is_found_without_a_restart_and_generates(service):
    assert models(service) == ["tiny-sd15"]
    for ext in (".yaml", ".json"):
        service["s3"].upload_file(MODEL + ext, BUCKET, f"{PREFIX}/models/Stable-diffusion/later{ext}")
    with open(MODEL + ".safetensors", "rb") as f:
        data = f.read()
    # same weights, another file: the copy is bounded by size, so drop the first model to make room
    service["s3"].delete_object(Bucket=BUCKET, Key=f"{PREFIX}/models/Stable-diffusion/tiny-sd15.safetensors")
    service["s3"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/models/Stable-diffusion/later.safetensors", Body=data)
    wait_for(lambda: models(service) == ["later"], 20, interval=0.25, what="the uploaded model in sd-models (and the deleted one gone)")
    r = requests.post(service["base"] + "/sdapi/v1/txt2img", headers={"Authorization": service["token"]},
                      json={"prompt": "x", "steps": 2, "width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": "later"}},
                      timeout=120)
    assert r.status_code == 200, r.text
    assert "Model: later" in json.loads(r.json()["info"])["infotexts"][0]


def test_a_changed_object_replaces_the_local_copy(service):
    key = f"{PREFIX}/embeddings/README.txt"
    service["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"first")
    local = os.path.join(service["cache"], "embeddings", "README.txt")
    wait_for(lambda: os.path.exists(local) and open(local, "rb").read() == b"first", 20, interval=0.25, what="the first version copied")
    service["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"second version")
    wait_for(lambda: open(local, "rb").read() == b"second version", 20, interval=0.25, what="the changed object copied again")


def test_files_beyond_the_size_bound_are_left_out_and_logged(service):
    with open(MODEL + ".safetensors", "rb") as f:
        data = f.read()
    service["s3"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/models/Stable-diffusion/zz-too-many.safetensors", Body=data)
    wait_for(lambda: "zz-too-many.safetensors" in service["ctl"].service_logs("cache_svc", tail=400) and "left out" in
             service["ctl"].service_logs("cache_svc", tail=400), 20, interval=0.25, what="the log saying the file was left out")
    assert "zz-too-many" not in models(service)
    assert not os.path.exists(os.path.join(service["cache"], "models", "Stable-diffusion", "zz-too-many.safetensors"))
