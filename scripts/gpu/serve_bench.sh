#!/usr/bin/env bash
# Serving benchmark on the GPU machine: `bitexact serve` with random weights of a config's real
# shapes, driven by `bitexact bench serve` (random 512 in / 256 out, greedy unless TEMPERATURE, ignore_eos), in
# invariant and non-invariant mode in the same run. Results: OUTDIR/<tag>.json plus one table
# line per point on stdout.
# Usage: scripts/gpu/serve_bench.sh OUTDIR BINDIR CONFIG_DIR "CONC:PROMPTS ..." [serve flags...]
#   e.g. serve_bench.sh $OUT .carry/gpu configs/qwen3-8b "1:32 8:800 64:800 256:800" --kv-cache-gb 30
# MODES="invariant" (or "non-invariant") runs one mode only, for runs split across calls.
# TEMPERATURE=1.0 sends that sampling temperature with every request (default 0: greedy); the
# result tags then end in _t<T>. TOP_K=20 / TOP_P=0.95 send top_k / top_p likewise (default: not
# sent; tags end in _k<K> / _p<P>). BENCH_BIN=DIR takes the `bench serve` client from DIR
# (default BINDIR): e.g. a newer client with --top-k driving an older server.
set -u -o pipefail
out=${1:?usage}
bin=${2:?usage}
model=${3:?usage}
points=${4:?usage}
shift 4
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$bin:${LD_LIBRARY_PATH:-}"
name=$(basename "$model")
port=8123
for mode in ${MODES:-invariant non-invariant}; do
  flags=()
  [ "$mode" = non-invariant ] && flags+=(--no-batch-invariant)
  "$bin/bitexact" serve --model "$model" --load-format dummy --device cuda --port $port \
    --max-num-seqs 256 --max-num-batched-tokens 8192 --max-connections 512 "${flags[@]}" "$@" \
    > "$out/serve_${name}_${mode}.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
    kill -0 $pid 2> /dev/null || break
    sleep 1
  done
  for p in $points; do
    conc=${p%%:*} n=${p##*:}
    tag="${name}_${mode}_c${conc}"
    [ -n "${TEMPERATURE:-}" ] && tag="${tag}_t${TEMPERATURE}"
    sampling=(--temperature "${TEMPERATURE:-0}")
    [ -n "${TOP_K:-}" ] && tag="${tag}_k${TOP_K}" && sampling+=(--top-k "$TOP_K")
    [ -n "${TOP_P:-}" ] && tag="${tag}_p${TOP_P}" && sampling+=(--top-p "$TOP_P")
    client=${BENCH_BIN:-$bin}
    LD_LIBRARY_PATH="$PWD/$client:$LD_LIBRARY_PATH" "$client/bitexact" bench serve \
      --base-url "http://127.0.0.1:$port" --num-prompts "$n" \
      --random-input-len 512 --random-output-len 256 --max-concurrency "$conc" --seed 0 \
      "${sampling[@]}" --result-file "$out/$tag.json" > "$out/$tag.log" 2> /dev/null
    python3 - "$out/$tag.json" "$tag" << 'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"{sys.argv[2]}: no result ({e})"); sys.exit()
print(f"{sys.argv[2]:40s} ok {j['completed']:4d} fail {j['failed']:3d} out tok/s {j['output_throughput']:8.1f} "
      f"TTFT med {j['median_ttft_ms']:8.1f} ms TPOT med {j['median_tpot_ms']:6.2f} ms ITL p99 {j['p99_itl_ms']:7.2f} ms")
PY
  done
  kill -TERM $pid; wait $pid
done
