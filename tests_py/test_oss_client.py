"""Atelier's own S3 client (`atelier oss …`, the same code an instance uses for its OSS data dir)
against a real SeaweedFS, with boto3 as the independent reader and writer."""
import hashlib
import os
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import BINARY
from seaweed import bucket, s3  # noqa: F401 (fixtures)

MIB = 1024 * 1024


def atelier_oss(s3, *args, secret=None, check=True):
    env = dict(os.environ, ATELIER_S3_ENDPOINT=s3.endpoint, AWS_REGION=s3.region,
               AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=secret or s3.secret_key)
    r = subprocess.run([BINARY, "oss", *args], env=env, capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_large_file_goes_up_in_parts_and_boto3_reads_the_same_bytes(s3, bucket, tmp_path):
    data = os.urandom(12 * MIB + 4321)
    f = tmp_path / "model.safetensors"
    f.write_bytes(data)
    key = f"data-oss/models/Stable-diffusion/{uuid.uuid4().hex[:6]}.safetensors"
    out = atelier_oss(s3, "put", str(f), f"oss://{bucket}/{key}", "--part-mb", "5", "--multipart-threshold-mb", "5").stdout.decode()
    got = s3.client().get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    # a multipart object's ETag is md5(part md5s)-<parts>: three parts of 5, 5 and 2 MiB
    parts = [data[i:i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert got["ETag"].strip('"') == expected
    assert expected in out


def test_small_file_is_one_put_keeping_its_name_under_a_prefix(s3, bucket, tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_bytes(b"model: {}\n")
    atelier_oss(s3, "put", str(f), f"oss://{bucket}/small/")
    body = s3.client().get_object(Bucket=bucket, Key="small/tiny.yaml")
    assert body["Body"].read() == b"model: {}\n"
    assert body["ETag"].strip('"') == hashlib.md5(b"model: {}\n").hexdigest()


def test_listing_follows_continuation_tokens_past_the_page_size(s3, bucket):
    prefix = "list-" + uuid.uuid4().hex[:6]
    keys = sorted(f"{prefix}/k{i}.bin" for i in range(7))
    for k in keys:
        s3.client().put_object(Bucket=bucket, Key=k, Body=k.encode())
    out = atelier_oss(s3, "list", f"oss://{bucket}/{prefix}", "--page-size", "2").stdout.decode().splitlines()
    assert [line.split("\t")[2] for line in out] == [f"oss://{bucket}/{k}" for k in keys]
    assert all(line.split("\t")[1] == hashlib.md5(k.encode()).hexdigest() for line, k in zip(out, keys))


def test_ranged_get_returns_exactly_the_asked_bytes(s3, bucket, tmp_path):
    data = bytes(range(256)) * 10
    s3.client().put_object(Bucket=bucket, Key="range/obj.bin", Body=data)
    dest = tmp_path / "part.bin"
    atelier_oss(s3, "get", f"oss://{bucket}/range/obj.bin", str(dest), "--range", "2-5")
    assert dest.read_bytes() == data[2:6]
    whole = tmp_path / "whole.bin"
    atelier_oss(s3, "get", f"oss://{bucket}/range/obj.bin", str(whole))
    assert whole.read_bytes() == data


def test_removed_object_is_gone_for_boto3_and_a_missing_one_is_named(s3, bucket):
    s3.client().put_object(Bucket=bucket, Key="gone/x.png", Body=b"x")
    atelier_oss(s3, "rm", f"oss://{bucket}/gone/x.png")
    with pytest.raises(ClientError) as e:
        s3.client().head_object(Bucket=bucket, Key="gone/x.png")
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    r = atelier_oss(s3, "rm", f"oss://{bucket}/gone/x.png", check=False)
    assert r.returncode != 0 and b"no such object" in r.stderr


def test_wrong_secret_is_refused_with_the_servers_reason(s3, bucket, tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"a")
    r = atelier_oss(s3, "put", str(f), f"oss://{bucket}/denied/a.bin", secret="not-the-secret", check=False)
    assert r.returncode != 0
    assert b"SignatureDoesNotMatch" in r.stderr
    with pytest.raises(ClientError):
        s3.client().head_object(Bucket=bucket, Key="denied/a.bin")
