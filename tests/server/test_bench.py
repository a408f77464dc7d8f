# `bitexact bench serve` against the test server: every request succeeds, the token totals match
# the seeded dataset (ignore_eos makes each request produce exactly its output length), and the
# result file carries vLLM's keys.
import json
import subprocess


def test_bench_serve(binary, server, tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([binary, "bench", "serve", "--base-url", server.url, "--num-prompts", "24",
                        "--random-input-len", "40", "--random-output-len", "20", "--random-range-ratio", "0.5",
                        "--request-rate", "50", "--max-concurrency", "8", "--seed", "3", "--result-file", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Serving Benchmark Result" in p.stdout and "24/24" in p.stderr
    r = json.loads(out.read_text())
    assert r["completed"] == 24 and r["failed"] == 0
    assert 24 * 10 <= r["total_output_tokens"] <= 24 * 30 and 24 * 20 <= r["total_input_tokens"] <= 24 * 60
    for key in ["request_throughput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
                "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "median_e2el_ms"]:
        assert r[key] > 0, key
    # the same seed gives the same dataset
    p2 = subprocess.run([binary, "bench", "serve", "--base-url", server.url, "--num-prompts", "24",
                         "--random-input-len", "40", "--random-output-len", "20", "--random-range-ratio", "0.5",
                         "--seed", "3", "--result-file", str(out)], capture_output=True, text=True, timeout=120)
    r2 = json.loads(out.read_text())
    assert p2.returncode == 0 and (r2["total_input_tokens"], r2["total_output_tokens"]) == \
        (r["total_input_tokens"], r["total_output_tokens"])
