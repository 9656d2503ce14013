"""The SeaweedFS harness (seaweed.py) gives a real, authenticated S3 server: these check, with boto3
and plain `requests`, the S3 behaviour the Swift client relies on."""
import hashlib
import os
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from seaweed import SeaweedS3, bucket, s3  # noqa: F401 (fixtures)

MIB = 1024 * 1024


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def quoted_md5(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def test_signed_put_then_get_round_trips_bytes(s3, bucket):
    client = s3.client()
    key = unique("round-trip") + "/image.png"
    data = os.urandom(MIB + 123)
    put = client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")
    assert put["ETag"] == quoted_md5(data)

    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ContentType"] == "image/png"
    assert got["ETag"] == quoted_md5(data)
    assert client.head_object(Bucket=bucket, Key=key)["ETag"] == quoted_md5(data)


def test_unsigned_request_is_refused(s3, bucket):
    key = unique("unsigned") + ".bin"
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"secret bytes")

    get = requests.get(f"{s3.endpoint}/{bucket}/{key}", timeout=10)
    assert get.status_code == 403
    assert b"<Code>AccessDenied</Code>" in get.content
    assert b"secret bytes" not in get.content

    put = requests.put(f"{s3.endpoint}/{bucket}/{key}-anonymous", data=b"x", timeout=10)
    assert put.status_code == 403
    with pytest.raises(ClientError) as missing:
        s3.client().head_object(Bucket=bucket, Key=key + "-anonymous")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_wrongly_signed_request_is_refused(s3, bucket):
    key = unique("wrong-secret") + ".bin"
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"x")

    with pytest.raises(ClientError) as refused:
        s3.client(secret_key=s3.secret_key + "x").get_object(Bucket=bucket, Key=key)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    with pytest.raises(ClientError) as unknown:
        s3.client(access_key="AKIANOTAREALKEY00000").get_object(Bucket=bucket, Key=key)
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert unknown.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_list_objects_v2_pages_with_continuation_token(s3, bucket):
    client = s3.client()
    prefix = unique("listing") + "/"
    keys = [f"{prefix}img-{i:02d}.png" for i in range(5)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())

    pages, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=2, **kwargs)
        pages.append(page)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
        assert len(pages) < 10, "listing does not end"

    assert [len(p.get("Contents", [])) for p in pages] == [2, 2, 1]
    assert [p["KeyCount"] for p in pages] == [2, 2, 1]
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert "NextContinuationToken" not in pages[-1]
    assert [o["ETag"] for p in pages for o in p["Contents"]] == [quoted_md5(k.encode()) for k in keys]


def test_multipart_upload_assembles_parts_in_order(s3, bucket):
    client = s3.client()
    key = unique("multipart") + "/big.bin"
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"short last part"]
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/octet-stream")
    done = []
    for number, data in enumerate(parts, start=1):
        part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=data)
        assert part["ETag"] == quoted_md5(data)
        done.append({"PartNumber": number, "ETag": part["ETag"]})
    result = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                              MultipartUpload={"Parts": done})

    # S3's multipart ETag: md5 of the parts' binary md5s, then "-<part count>"
    expected_etag = '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + '-3"'
    assert result["ETag"] == expected_etag
    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == expected_etag


def test_ranged_get_returns_206_with_requested_bytes(s3, bucket):
    client = s3.client()
    key = unique("range") + ".bin"
    client.put_object(Bucket=bucket, Key=key, Body=b"0123456789")

    got = client.get_object(Bucket=bucket, Key=key, Range="bytes=2-5")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes 2-5/10"
    assert got["ContentLength"] == 4
    assert got["Body"].read() == b"2345"


def _listening_addresses(pid):
    """(address, port) of the TCP sockets `pid` listens on, from /proc (IPv6 ones as '[v6]')."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A = LISTEN
                    continue
                addr_hex, port_hex = local.split(":")
                if table == "tcp":
                    addr = ".".join(str(b) for b in reversed(bytes.fromhex(addr_hex)))
                else:
                    addr = "[v6]" + addr_hex
                found.append((addr, int(port_hex, 16)))
    return found


def test_server_listens_on_loopback_only_on_the_chosen_ports(s3):
    listening = _listening_addresses(s3.proc.pid)
    assert listening, "weed listens on nothing?"
    assert {addr for addr, _ in listening} == {"127.0.0.1"}
    assert {port for _, port in listening} == set(s3.ports.values())


def test_stop_kills_the_server_and_removes_its_temp_dir():
    server = SeaweedS3().start()
    pid, temp_dir, endpoint = server.proc.pid, server.dir, server.endpoint
    assert os.path.exists(os.path.join(temp_dir, "weed.log")) and "Start Seaweed" in server.logs()
    server.stop()
    assert not os.path.exists(temp_dir)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(endpoint, timeout=5)
    server.stop()  # twice is harmless
