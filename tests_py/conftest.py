"""Starts real `atelier serve` processes on ephemeral loopback ports for the API tests."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build", "release", "atelier")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "models", "tiny-sd15")


class Server:
    def __init__(self, *flags, with_model=True):
        self.dir = tempfile.mkdtemp(prefix="atelier-api-")
        self.data = os.path.join(self.dir, "data")
        ckpt = os.path.join(self.data, "models", "Stable-diffusion")
        os.makedirs(ckpt)
        if with_model:
            self.add_model()
        self.flags = flags
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.start()

    def start(self, *flags):
        """Starts (or restarts, on the same data dir) the server; `flags` replace the first start's."""
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.proc = subprocess.Popen([BINARY, "serve", "--data-dir", self.data, "--port", "0", "--port-file", port_file,
                                      *(flags or self.flags)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            assert self.proc.poll() is None, "server exited: " + open(self.log.name).read()
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"127.0.0.1:{self.port}"

    def kill(self):
        """SIGKILL: the process dies mid-job, as in a crash."""
        self.proc.kill()
        self.proc.wait()

    def logs(self):
        self.log.flush()
        return open(self.log.name).read()

    def add_model(self, name="tiny-sd15"):
        ckpt = os.path.join(self.data, "models", "Stable-diffusion")
        for ext in (".safetensors", ".yaml", ".json"):
            shutil.copy(MODEL + ext, os.path.join(ckpt, name + ext))

    def stop(self):
        if self.proc.poll() is not None:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def make_server():
    made = []

    def make(*flags, **kw):
        s = Server(*flags, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def pytest_sessionstart(session):
    assert os.path.exists(BINARY), f"build first: {BINARY} is missing (scripts/test builds it)"
    requests.packages.urllib3.disable_warnings()
