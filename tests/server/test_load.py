# The load test of issue 6: 256 concurrent streaming clients for 60 s against a server of its own,
# a third of whose requests hang up mid-stream at a random point. It checks that
# - every request that stayed connected completed: HTTP 200, `[DONE]`, finish_reason "length" and
#   exactly max_tokens tokens in the usage chunk (ignore_eos); no connection error, no timeout;
# - all clients were served at once: the HTTP pool grew to hold every open stream and no
#   connection ever waited for a thread (/metrics: http_connections_active,
#   http_connections_waited_total);
# - memory stayed flat: the server's RSS (VmRSS in /proc/<pid>/status, sampled each second) after
#   a 10 s warm-up has its last-third median within 10% + 8 MiB of its first-third median. The KV
#   cache is allocated at start but its pages become resident as blocks are first used (the block
#   manager hands out never-used blocks before evicting cached ones), so the default 256 MiB cache
#   would look like growth for a minute; the test server gets 4096 blocks (about 80 MiB, above the
#   ~3,600 that 256 sequences need at once), which are all resident within the warm-up;
# - afterwards nothing is running, waiting or in flight, and every KV block is free again.
# BITEXACT_LOAD_CLIENTS and BITEXACT_LOAD_SECONDS scale it (CI runs the defaults).
import asyncio
import json
import os
import random
import ssl
import statistics
import threading
import time

import httpx

from conftest import MODEL_NAME, ServerProcess

CLIENTS = int(os.environ.get("BITEXACT_LOAD_CLIENTS", "256"))
DURATION_S = float(os.environ.get("BITEXACT_LOAD_SECONDS", "60"))
WARMUP_S = 10
RSS_SLACK = 0.10           # relative growth allowed between the first and last thirds
RSS_SLACK_KIB = 8 * 1024   # plus this much, for allocator noise on a small process


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def client_loop(index, http, url, stop_at, stats):
    rng = random.Random(index)
    async with http:
        while time.time() < stop_at[0]:
            max_tokens = rng.randint(8, 120)
            body = {"model": MODEL_NAME, "prompt": "Once upon a time " * rng.randint(1, 20),
                    "max_tokens": max_tokens, "temperature": 1.0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            hang_up_after = rng.randint(1, 10) if rng.random() < 0.33 else None
            chunks, done, finish, usage, hung_up = 0, False, None, None, False
            try:
                async with http.stream("POST", url + "/v1/completions", json=body) as r:
                    if r.status_code != 200:
                        stats["failed"].append(f"status {r.status_code}: {(await r.aread())[:200]}")
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            done = True
                            break
                        event = json.loads(line[6:])
                        if "error" in event:
                            stats["failed"].append(f"error event: {event}")
                            break
                        if event.get("usage"):
                            usage = event["usage"]
                        for c in event["choices"]:
                            finish = c["finish_reason"] or finish
                        chunks += 1
                        if hang_up_after and chunks >= hang_up_after:
                            hung_up = True
                            break  # leaving the block closes the connection mid-stream
            except httpx.HTTPError as e:
                stats["failed"].append(f"{type(e).__name__}: {e}")
                continue
            if hung_up:
                stats["disconnected"] += 1
            elif done and finish == "length" and usage and usage["completion_tokens"] == max_tokens:
                stats["completed"] += 1
            else:
                stats["failed"].append(f"incomplete: done={done} finish={finish} usage={usage}")


def sample_server(server, stop, samples):
    """Each second: the server's RSS and its HTTP pool gauges."""
    start = time.time()
    while not stop.is_set():
        m = server.metrics()
        samples.append((time.time() - start, rss_kib(server.proc.pid),
                        m["bitexact:http_connections_active"], m["bitexact:http_connections_waited_total"]))
        stop.wait(1.0)


def test_256_streaming_clients_with_disconnects(binary):
    server = ServerProcess(binary, "--num-kv-blocks", "4096")
    try:
        stats = {"completed": 0, "disconnected": 0, "failed": []}
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_server, args=(server, stop, samples))
        sampler.start()
        stop_at = [0.0]

        async def run_all():
            # One client (its own connections) per simulated user; they share one TLS context,
            # whose creation would otherwise take seconds for 256 clients before any request.
            tls = ssl.create_default_context()
            clients = [httpx.AsyncClient(timeout=httpx.Timeout(120.0), verify=tls) for _ in range(CLIENTS)]
            stop_at[0] = time.time() + DURATION_S
            await asyncio.gather(*(client_loop(i, c, server.url, stop_at, stats) for i, c in enumerate(clients)))

        asyncio.run(run_all())
        stop.set()
        sampler.join()

        print(f"\nload: {stats['completed']} completed, {stats['disconnected']} disconnected, "
              f"{len(stats['failed'])} failed in {DURATION_S:.0f} s with {CLIENTS} clients")
        print("load: t(s), RSS (MiB), active connections, connections that waited: " +
              ", ".join(f"({t:.0f}, {r / 1024:.1f}, {a:.0f}, {q:.0f})" for t, r, a, q in samples))
        assert not stats["failed"], stats["failed"][:5]
        assert stats["completed"] > CLIENTS and stats["disconnected"] > CLIENTS // 4, stats

        # Nearly every client held a connection at one sampling instant (some are always between
        # a hang-up and their next request, so the peak seen once a second may fall a little short
        # of CLIENTS; the old fixed pool capped it at 128), and no connection waited for a thread.
        assert max(a for _, _, a, _ in samples) >= 0.9 * CLIENTS, samples
        assert server.metrics()["bitexact:http_connections_waited_total"] == 0, samples

        rss = [r for t, r, _, _ in samples if t >= WARMUP_S]
        third = len(rss) // 3
        assert third >= 5, "too few RSS samples after the warm-up"
        first, last = statistics.median(rss[:third]), statistics.median(rss[-third:])
        print(f"load: RSS median first third {first / 1024:.1f} MiB, last third {last / 1024:.1f} MiB")
        assert last <= first * (1 + RSS_SLACK) + RSS_SLACK_KIB, (first, last)

        deadline = time.time() + 15
        while True:
            m = server.metrics()
            idle = (m["bitexact:num_requests_running"] == 0 and m["bitexact:num_requests_waiting"] == 0
                    and m["bitexact:num_requests_in_flight"] == 0
                    and m["bitexact:kv_blocks_free"] == m["bitexact:kv_blocks_total"])
            if idle or time.time() > deadline:
                break
            time.sleep(0.2)
        print(f"load: KV blocks free {m['bitexact:kv_blocks_free']:.0f} of {m['bitexact:kv_blocks_total']:.0f}")
        assert idle, m
        aborted = m[f'bitexact:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}']
        print(f"load: {aborted:.0f} engine requests aborted")
        assert aborted >= stats["disconnected"] * 0.9, (aborted, stats)  # hang-ups after the end are no abort
        # And it still answers.
        r = httpx.post(server.url + "/v1/completions", timeout=30,
                       json={"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 4})
        assert r.status_code == 200, r.text
    finally:
        code = server.stop()
    assert code == 0, f"server exit code {code}\n{server.output()[-3000:]}"


def test_connections_past_max_connections_wait_and_succeed(binary):
    """With --max-connections 4, 16 concurrent streams queue for a thread and all complete."""
    server = ServerProcess(binary, "--max-connections", "4")
    try:
        results = []

        def one(i):
            body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 40, "ignore_eos": True,
                    "stream": True, "seed": i}
            with httpx.Client(timeout=60) as http, http.stream("POST", server.url + "/v1/completions",
                                                               json=body) as r:
                events = [line for line in r.iter_lines() if line.startswith("data: ")]
            results.append((r.status_code, events[-1] if events else None))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [(200, "data: [DONE]")] * 16, results
        m = server.metrics()
        assert m["bitexact:http_threads"] <= 4 and m["bitexact:http_connections_waited_total"] > 0, m
    finally:
        code = server.stop()
    assert code == 0, server.output()[-3000:]
