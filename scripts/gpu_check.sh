#!/usr/bin/env bash
# The one GPU run: on the device machine, runs every CUDA test binary, the decode benchmark of
# the 0.6B, 8B and 30B-A3B shapes in both modes and (unless --quick) the kernel benchmarks,
# logging to OUTDIR and printing a short table last. Binaries are built on the build machine by
# `scripts/gpu_build.sh` into BINDIR (carry BINDIR.tar.zst; it is unpacked here when BINDIR is
# missing). Usage: scripts/gpu_check.sh OUTDIR [BINDIR (default .carry/gpu)] [--quick]
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [BINDIR] [--quick]}
bin=${2:-.carry/gpu}
quick=${3:-}
mkdir -p "$out"
if [ ! -d "$bin" ]; then
  LD_LIBRARY_PATH=.carry/zstd .carry/zstd/zstd -q -d --long=27 -c "$bin.tar.zst" | tar -C "$(dirname "$bin")" -xf -
fi
export LD_LIBRARY_PATH="$PWD/$bin:${LD_LIBRARY_PATH:-}"
status=0
run() {  # name, timeout, command...
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  grep -E "^\[  (PASSED|FAILED) |FAILED  \]|Failure|: \|gpu|tok/s" "$out/$name.log" | head -40
  echo "$name exit code $rc"
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/device.txt"
for t in "$bin"/*_test; do
  run "$(basename "$t")" 300 "$t" --gtest_color=no
done
for m in qwen3-0.6b:32 qwen3-8b:32 qwen3-30b-a3b:8; do
  for mode in "" "--no-batch-invariant"; do
    tag="decode_${m%:*}${mode//-/_}"
    run "$tag" 300 "$bin/bench_decode" "configs/${m%:*}" --load-format dummy --device cuda --tokens 128 --batch "${m#*:}" $mode
  done
done
if [ "$quick" != "--quick" ]; then
  bash scripts/gpu/gemm.sh "$out/gemm" "$bin" || status=1
  bash scripts/gpu/ops.sh "$out/ops" "$bin" || status=1
fi
echo "== decode summary"
grep "tok/s" "$out"/decode_*.log
exit $status
