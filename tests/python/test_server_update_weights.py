# POST /v1/update_weights on `bitexact serve`: the server swaps to a perturbed copy of a fixture and
# back, answering as a fresh load of each (and as the Python API); a streaming request in flight
# finishes on the old weights while a request sent during the drain runs on the new ones; bad
# checkpoints get a 400 and change nothing.
import json
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from bitexact import LLM, SamplingParams
from conftest import FIXTURES, QWEN, f32_bits

PROMPT = [5, 17, 300, 42, 9, 1000, 77, 3]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(binary, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([binary, "serve", "--model", str(QWEN), "--port", str(port), "--served-model-name", "q",
                             "--max-model-len", "512"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None and time.time() < deadline, log.read()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def complete(url, max_tokens=12, seed=5):
    r = httpx.post(url + "/v1/completions", timeout=120, json={
        "model": "q", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
        "logprobs": 1, "ignore_eos": True})
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    return c["token_ids"], [f32_bits(x) for x in c["logprobs"]["token_logprobs"]]


def python_result(model, max_tokens=12, seed=5):
    [o] = LLM(str(model), device="cpu").generate(
        {"prompt_token_ids": PROMPT},
        SamplingParams(temperature=0.8, seed=seed, max_tokens=max_tokens, logprobs=1, ignore_eos=True),
        use_tqdm=False)
    c = o.outputs[0]
    return c.token_ids, [f32_bits(d[t].logprob) for t, d in zip(c.token_ids, c.logprobs)]


def update(url, path):
    return httpx.post(url + "/v1/update_weights", json={"path": str(path)}, timeout=120)


def test_swap_and_back(server, qwen_other):
    a, b = python_result(QWEN), python_result(qwen_other)
    assert a != b
    assert complete(server) == a
    r = update(server, qwen_other)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert complete(server) == b
    assert update(server, QWEN).status_code == 200
    assert complete(server) == a


def test_bad_checkpoints_get_400_and_change_nothing(server, tmp_path):
    a = python_result(QWEN)
    for body, needle in [({"path": str(FIXTURES / "qwen3-tiny-f32-tied")}, "shape"),
                         ({"path": str(tmp_path / "missing")}, "missing"),
                         ({"path": 5}, "`path`"), ({}, "`path`")]:
        r = httpx.post(server + "/v1/update_weights", json=body, timeout=60)
        assert r.status_code == 400, r.text
        assert needle in r.json()["error"]["message"]
        assert complete(server) == a


def test_requests_in_flight_keep_their_weights(server, qwen_other):
    long_old = python_result(QWEN, max_tokens=300, seed=9)
    new = python_result(qwen_other)
    streamed, first_chunk = {"lps": []}, threading.Event()

    def stream():
        with httpx.stream("POST", server + "/v1/completions", timeout=120, json={
                "model": "q", "prompt": PROMPT, "max_tokens": 300, "temperature": 0.8, "seed": 9,
                "logprobs": 1, "ignore_eos": True, "stream": True}) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                c = json.loads(line[6:])["choices"][0]
                streamed["lps"] += [f32_bits(x) for x in (c.get("logprobs") or {}).get("token_logprobs", [])]
                first_chunk.set()

    t_stream = threading.Thread(target=stream)
    t_stream.start()
    assert first_chunk.wait(60)
    updated = {}
    t_update = threading.Thread(target=lambda: updated.update(r=update(server, qwen_other)))
    t_update.start()
    time.sleep(0.3)  # the update is staged: requests from now on wait for the new weights
    during = complete(server)
    t_update.join()
    t_stream.join()
    assert updated["r"].status_code == 200, updated["r"].text
    assert streamed["lps"] == long_old[1]  # all 300 tokens on the old weights
    assert during == new  # sent during the drain, run after the swap
