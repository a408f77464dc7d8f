#!/usr/bin/env python3
"""Peer for bench_attention: torch scaled_dot_product_attention on the same shapes (32 q heads,
8 kv heads via enable_gqa, head_dim 128, bf16), contiguous (not paged) KV. Decode rotates over KV
copies (as bench_attention does) so small caches are not served from L2. CUDA-event timing,
median of 7 runs; --decode-only skips prefill. Prints CSV lines:
kind,mode,batch,ctx,us,floor_us_or_tflops,floor_fraction."""
import torch
import torch.nn.functional as F

HQ, HKV, DH = 32, 8, 128
BW = 2.6e12


def median_us(fn, per_call, reps=7):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / per_call)
    return sorted(times)[len(times) // 2]


def graphed(fn):
    """Capture fn into a CUDA graph (as our bench does) and return a replay function."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def decode(batch, ctx):
    kv_bytes = 2.0 * batch * ctx * HKV * DH * 2
    copies = int(min(max(256e6 / kv_bytes, 1), 32))
    q = torch.randn(batch, HQ, 1, DH, device="cuda", dtype=torch.bfloat16)
    kvs = [(torch.randn(batch, HKV, ctx, DH, device="cuda", dtype=torch.bfloat16),
            torch.randn(batch, HKV, ctx, DH, device="cuda", dtype=torch.bfloat16)) for _ in range(copies)]

    def run():
        for k, v in kvs:
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    us = median_us(graphed(run), copies)
    floor = kv_bytes / BW * 1e6
    print(f"peer_decode,torch,{batch},{ctx},{us:.2f},{floor:.2f},{floor / us:.3f}", flush=True)


def prefill(n):
    q = torch.randn(1, HQ, n, DH, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, HKV, n, DH, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, HKV, n, DH, device="cuda", dtype=torch.bfloat16)
    us = median_us(graphed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)), 1)
    flops = 4.0 * n * (n + 1) / 2 * HQ * DH
    print(f"peer_prefill,torch,1,{n},{us:.2f},{flops / (us * 1e-6) / 1e12:.1f},0", flush=True)


if __name__ == "__main__":
    import sys
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    for b in (1, 8, 64):
        for c in (1024, 4096, 16384):
            decode(b, c)
    if "--decode-only" not in sys.argv[1:]:
        for n in (1024, 4096, 16384):
            prefill(n)
