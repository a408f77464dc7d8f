#!/usr/bin/env python3
"""Encode throughput, one thread: bitexact (build/.../bench_tokenizer) vs Hugging Face `tokenizers`
on the same corpus (the seeded strings of scripts/tokenizer_corpus.py, plus plain English prose).
Prints a markdown table of MB/s per tokenizer.
Usage: scripts/bench_tokenizer.py --bench BUILD/src/tokenizer/bench_tokenizer [--shared ../shared]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402


def hf_throughput(tok_dir, texts, repeats):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    best, ntok = 1e30, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        ntok = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
        best = min(best, time.perf_counter() - t0)
    best_batch = 1e30
    for _ in range(repeats):  # encode_batch on one rayon thread: no per-call Python overhead
        t0 = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
    return nbytes / best / 1e6, nbytes / best_batch / 1e6, ntok


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="path of the bench_tokenizer binary")
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--per-category", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name in ("qwen3", "llama3", "llama2"):
        d = os.path.join(args.shared, "tokenizers", name)
        corpora = {
            "mixed": tokenizer_corpus.make_strings(1234, args.per_category, []),
            "prose": [tokenizer_corpus.prose(__import__("random").Random(i)) for i in range(20000)],
        }
        for cname, texts in corpora.items():
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
                for t in texts:
                    f.write(json.dumps(t, ensure_ascii=False) + "\n")
                path = f.name
            hf_mbs, hf_batch, hf_tok = hf_throughput(d, texts, args.repeats)
            out = subprocess.run([args.bench, d, path, str(args.repeats)], check=True,
                                 capture_output=True, text=True).stdout
            ours = json.loads(out.strip().splitlines()[-1])
            os.unlink(path)
            if ours["tokens"] != hf_tok:
                print(f"warning: {name}/{cname}: token counts differ ({ours['tokens']} vs {hf_tok})",
                      file=sys.stderr)
            rows.append((name, cname, ours["bytes"] / 1e6, hf_mbs, hf_batch, ours["mb_per_s"]))
    print("| tokenizer | corpus | MB | HF encode() MB/s | HF encode_batch 1 thread MB/s | "
          "bitexact MB/s | vs best HF |")
    print("|---|---|---|---|---|---|---|")
    for name, cname, mb, hf, hfb, ours in rows:
        print(f"| {name} | {cname} | {mb:.1f} | {hf:.2f} | {hfb:.2f} | {ours:.2f} | "
              f"{ours / max(hf, hfb):.2f}x |")


if __name__ == "__main__":
    main()
