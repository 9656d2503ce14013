"""Harness for the deploy tests: a real `atelier controller` (control plane + gateway) on a private
data dir, with SeaweedFS (seaweed.py) playing OSS and temp dirs playing the NAS servers, plus the
`atelier deploy` / `atelier services` CLI and the controller's REST API.

    with SeaweedS3() as s3:
        ctl = ControllerProcess(s3, nas={"server": "/tmp/dir"})
        ctl.start()
        ctl.cli("deploy", spec_path, "--json")
        ...
        ctl.stop()

Everything polls with deadlines; nothing sleeps for long."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build", "release", "atelier")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
J1 = os.path.join(FIXTURES, "deploy", "j1.json")
J2 = os.path.join(FIXTURES, "deploy", "j2.json")
MODEL = os.path.join(FIXTURES, "models", "tiny-sd15")
MODEL_EXTS = (".safetensors", ".yaml", ".json")
CONTAINER_DATA = "/code/stable-diffusion-webui/data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `what` and the last value or exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - the last failure is reported
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def process_state(pid):
    """The /proc state letter of `pid` ('R', 'S', 'Z', …) or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2]


def pid_exists(pid):
    """os.kill(pid, 0) succeeds (a zombie counts as existing)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def pid_alive(pid):
    """Exists and is not a zombie (an orphan whose reaper has not reaped it yet is dead)."""
    return pid_exists(pid) and process_state(pid) not in (None, "Z")


def port_refuses(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def processes_mentioning(text):
    """Pids (not zombies) whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def upload_model(s3_client, bucket, prefix):
    """The test checkpoint into `<prefix>/models/Stable-diffusion/` of `bucket`."""
    prefix = prefix.strip("/")
    for ext in MODEL_EXTS:
        with open(MODEL + ext, "rb") as f:
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/models/Stable-diffusion/tiny-sd15{ext}", Body=f.read())


def load_spec(path):
    with open(path) as f:
        return json.load(f)


class CLIResult:
    def __init__(self, args, proc):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def output(self):
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return f"atelier {' '.join(self.args)} → exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class ControllerProcess:
    """One `atelier controller` on a temp data dir (kept across restarts) with a config naming the
    S3 store and the NAS directories."""

    START_TIMEOUT = 60

    def __init__(self, s3, nas, **extra_config):
        self.base = tempfile.mkdtemp(prefix="atelier-deploy-")
        self.dir = os.path.join(self.base, "controller")
        os.makedirs(self.dir)
        self.config_path = os.path.join(self.base, "config.json")
        with open(self.config_path, "w") as f:
            json.dump({"nas": nas, "s3": {"endpoint": s3.endpoint, "region": s3.region, "accessKey": s3.access_key,
                                          "secretKey": s3.secret_key, "pathStyle": True}, **extra_config}, f)
        self.log_path = os.path.join(self.base, "controller.log")
        self.proc = None
        self.port = None
        self.url = None
        self.admin_token = None

    # life cycle

    def start(self):
        port_file = os.path.join(self.base, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        with open(self.log_path, "ab") as log:
            log.write(f"==== controller start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen([BINARY, "controller", "--data-dir", self.dir, "--port", "0", "--port-file", port_file,
                                          "--config", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, "controller exited:\n" + self.logs(tail=40)
            return os.path.exists(port_file) and open(port_file).read().strip()
        self.port = int(wait_for(up, self.START_TIMEOUT, what="the controller's port file"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"127.0.0.1:{self.port}"
        with open(os.path.join(self.dir, "controller.url")) as f:
            assert f.read().strip() == self.url
        with open(os.path.join(self.dir, "admin-token")) as f:
            self.admin_token = f.read().strip()
        return self

    def kill(self):
        """SIGKILL: the instances stay running for the next controller."""
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=60):
        """SIGTERM and wait (the controller stops every instance first)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the controller did not stop within {timeout} s of SIGTERM:\n" + self.logs(tail=40))

    def leftover_instances(self):
        """Live processes started for this controller's services (their command line names its dir)."""
        return processes_mentioning(self.dir + "/services/")

    def cleanup(self):
        """Removes the temp dir (kept, and its path printed, when $ATELIER_KEEP_DEPLOY_DIR is set)."""
        if os.environ.get("ATELIER_KEEP_DEPLOY_DIR"):
            print(f"\nkept the controller's dir: {self.base}")
            return
        shutil.rmtree(self.base, ignore_errors=True)

    def logs(self, tail=None):
        try:
            with open(self.log_path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return ""
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def service_logs(self, name, tail=40):
        """The last lines of each instance log of a service (for failure messages)."""
        logs = os.path.join(self.dir, "services", name, "logs")
        out = []
        if os.path.isdir(logs):
            for f in sorted(os.listdir(logs)):
                with open(os.path.join(logs, f), errors="replace") as fh:
                    lines = fh.read().splitlines()
                out.append(f"==> {f} <==\n" + "\n".join(lines[-tail:]))
        return "\n".join(out)

    def service_dirs(self):
        d = os.path.join(self.dir, "services")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    # CLI

    def cli(self, *args, timeout=300, check=False):
        proc = subprocess.run([BINARY, *args, "--controller-dir", self.dir], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        r = CLIResult(args, proc)
        if check:
            assert r.returncode == 0, repr(r)
        return r

    def deploy(self, spec_path, *flags):
        """`atelier deploy SPEC --json`; returns the described service (asserts success)."""
        r = self.cli("deploy", spec_path, "--json", *flags)
        assert r.returncode == 0, repr(r) + "\ncontroller log:\n" + self.logs(tail=30)
        return r.json()

    def describe(self, name):
        return self.cli("services", "describe", name, "--json", check=True).json()

    def list_names(self):
        return [s["name"] for s in self.cli("services", "list", "--json", check=True).json()["services"]]

    # REST

    def rest(self, method, path, **kw):
        headers = kw.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {self.admin_token}")
        return requests.request(method, self.url + path, headers=headers, timeout=kw.pop("timeout", 300), **kw)

    def get(self, name):
        r = self.rest("GET", f"/api/services/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def ensure_deployed(self, spec_path, name):
        """Deploys unless a service of that name exists; waits until it runs; returns its description."""
        if name not in self.list_names():
            self.deploy(spec_path)
        return self.wait_running(name)

    def wait_running(self, name, count=None, timeout=120):
        def ok():
            d = self.get(name)
            n = count if count is not None else d["instances"]
            running = [i for i in d["instance_list"] if i["state"] in ("running", "busy")]
            return d if d["status"] == "Running" and len(running) == n == len(d["instance_list"]) else None
        try:
            return wait_for(ok, timeout, interval=0.1, what=f"{name} running")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.service_logs(name)}\ncontroller log:\n{self.logs(tail=30)}") from None
