#!/usr/bin/env bash
# Per-kernel time of decode steps on the device machine, read by Nsight Compute (ncu, hardware
# timer per kernel, caches and clocks left alone). Runs bench_decode eagerly at batch 1 and
# profiles a window of launches inside the decode steps; scripts/gpu/kernel_breakdown.py turns
# the CSV into per-step time by kernel.
# Usage: scripts/gpu/profile_decode.sh OUTDIR BINDIR CONFIG [SKIP] [COUNT] [bench_decode flags...]
set -uo pipefail
out=${1:?usage}; bin=${2:?usage}; config=${3:?usage}
skip=${4:-3000}; count=${5:-1500}
shift 5 2>/dev/null || shift $#
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$bin:${LD_LIBRARY_PATH:-}"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
tag=$(basename "$config")
timeout 400 "$ncu" --clock-control none --cache-control none --metrics gpu__time_duration.sum \
  --launch-skip "$skip" --launch-count "$count" --csv --page raw --print-units base \
  --log-file "$out/$tag.ncu.csv" \
  "$bin/bench_decode" "$config" --load-format dummy --device cuda --tokens 200 --batch 1 \
  --enforce-eager "$@" > "$out/$tag.bench.log" 2>&1
echo "profile $tag exit code $?"
