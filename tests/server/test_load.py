# A short load test: 64 concurrent streaming clients for ~15 s, a third of which hang up mid-stream.
# Afterwards nothing is running or waiting, every KV block is free again (aborts freed theirs), and
# the server still answers.
import json
import random
import threading
import time

import httpx

from conftest import MODEL_NAME

DURATION_S = 15
CLIENTS = 64


def client_loop(url, seed, stats, stop_at):
    rng = random.Random(seed)
    with httpx.Client(timeout=60) as http:
        while time.time() < stop_at:
            body = {"model": MODEL_NAME, "prompt": "Once upon a time " * rng.randint(1, 20),
                    "max_tokens": rng.randint(8, 120), "temperature": 1.0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            hang_up_after = rng.randint(1, 10) if rng.random() < 0.33 else None
            try:
                with http.stream("POST", url + "/v1/completions", json=body) as r:
                    if r.status_code != 200:
                        stats["errors"].append(r.status_code)
                        continue
                    chunks = 0
                    for line in r.iter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            json.loads(line[6:])
                            chunks += 1
                            if hang_up_after and chunks >= hang_up_after:
                                break  # leaving the block closes the connection mid-stream
                    stats["aborted" if hang_up_after else "completed"] += 1
            except httpx.HTTPError as e:
                stats["errors"].append(repr(e))


def test_load_with_disconnects(server):
    stats = {"completed": 0, "aborted": 0, "errors": []}
    stop_at = time.time() + DURATION_S
    threads = [threading.Thread(target=client_loop, args=(server.url, i, stats, stop_at)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not stats["errors"], stats["errors"][:5]
    assert stats["completed"] > CLIENTS and stats["aborted"] > 10, stats
    deadline = time.time() + 10
    while True:
        m = server.metrics()
        idle = (m["bitexact:num_requests_running"] == 0 and m["bitexact:num_requests_waiting"] == 0
                and m["bitexact:num_requests_in_flight"] == 0
                and m["bitexact:kv_blocks_free"] == m["bitexact:kv_blocks_total"])
        if idle or time.time() > deadline:
            break
        time.sleep(0.2)
    assert idle, m
    assert m['bitexact:request_success_total{model_name="stories",finished_reason="abort"}'] > 10
