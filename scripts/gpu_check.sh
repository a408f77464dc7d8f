#!/usr/bin/env bash
# The one GPU run: on the device machine, runs the CUDA tests (ops, attention, GEMM, the model),
# the kernel benchmarks and the decode benchmark, logging to OUTDIR and printing a short table
# last. Binaries are built on the build machine by `scripts/gpu_build.sh` into BINDIR.
# Usage: scripts/gpu_check.sh OUTDIR [BINDIR (default .carry/gpu)] [--quick]
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [BINDIR] [--quick]}
bin=${2:-.carry/gpu}
quick=${3:-}
mkdir -p "$out"
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
run model_cuda_test 300 "$bin/model_cuda_test" --gtest_color=no
for m in qwen3-0.6b qwen3-8b; do
  for mode in "" "--no-batch-invariant" "--enforce-eager"; do
    tag="decode_${m}${mode//-/_}"
    run "$tag" 200 "$bin/bench_decode" "configs/$m" --load-format dummy --device cuda --tokens 128 --batch 32 $mode
  done
done
if [ "$quick" != "--quick" ]; then
  bash scripts/gpu/gemm.sh "$out/gemm" "$bin" || status=1
  bash scripts/gpu/ops.sh "$out/ops" "$bin" || status=1
fi
echo "== decode summary"
grep "tok/s" "$out"/decode_*.log
exit $status
