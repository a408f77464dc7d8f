# Fixtures for the server tests: start `bitexact serve` on a free loopback port with the tiny
# stories260K model (and a test chat template), wait for /health, and stop it with SIGTERM at the
# end, checking that it exits 0. Run: python3 -m pytest tests/server -q --bitexact-bin PATH
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = (REPO / ".." / "shared" / "models" / "stories260K.gguf").resolve()
TEMPLATE = Path(__file__).resolve().parent / "chat_template.jinja"
MODEL_NAME = "stories"


def pytest_addoption(parser):
    parser.addoption("--bitexact-bin", default=str(REPO / "build" / "apps" / "bitexact"),
                     help="path of the bitexact binary")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One running `bitexact serve`; `url` is its base URL."""

    def __init__(self, binary, *extra, env=None, max_model_len=256):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(f"/tmp/bitexact-serve-test-{self.port}.log", "w+")
        args = [binary, "serve", "--model", str(MODEL), "--port", str(self.port),
                "--served-model-name", MODEL_NAME, "--chat-template", str(TEMPLATE),
                "--max-model-len", str(max_model_len), *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy: " + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def client(self, api_key="none"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=60)

    def metrics(self):
        out = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name.split("{")[0] if "_bucket" not in name and "finished_reason" not in name
                    and "status=" not in name else name] = float(value)
        return out

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (a graceful shutdown exits 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "hung"


@pytest.fixture(scope="session")
def binary(request):
    path = request.config.getoption("--bitexact-bin")
    if not Path(path).exists():
        pytest.exit(f"bitexact binary not found at {path} (give --bitexact-bin)", 2)
    return path


@pytest.fixture(scope="session")
def server(binary):
    s = ServerProcess(binary)
    yield s
    code = s.stop()
    assert code == 0, f"server exit code {code}\n{s.output()[-3000:]}"


@pytest.fixture(scope="session")
def client(server):
    return server.client()


@pytest.fixture
def healthy(server):
    """Checks after the test that the server still answers a normal request."""
    yield
    r = httpx.post(server.url + "/v1/completions", timeout=30,
                   json={"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1
