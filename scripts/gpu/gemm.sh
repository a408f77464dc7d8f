#!/usr/bin/env bash
# Runs the GEMM (ops::cuda::linear) tests and benchmark on the GPU machine and writes logs to
# OUTDIR. Usage: scripts/gpu/gemm.sh OUTDIR [BINDIR (default .carry/gemm)] [bench flags...]
# BINDIR holds linear_cuda_test, linear_invariance_test, linear_wgmma_test and bench_gemm (sm_90a).
set -u -o pipefail
OUT_DIR=${1:?usage: gemm.sh OUTDIR [BINDIR] [bench flags]}
BIN_DIR=${2:-.carry/gemm}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$OUT_DIR"
# cuBLASLt comes from the machine's CUDA toolkit (or PyTorch's wheel as a fallback).
if ! ldconfig -p | grep -q libcublasLt.so.13; then
  LT=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcublasLt.so.13' 2>/dev/null | head -1)
  [ -n "$LT" ] && export LD_LIBRARY_PATH=$(dirname "$LT"):${LD_LIBRARY_PATH:-}
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv \
  2>&1 | tee "$OUT_DIR/device.log"
status=0
for t in linear_cuda_test linear_invariance_test linear_wgmma_test; do
  echo "== $t"
  timeout 200 "$BIN_DIR/$t" --gtest_color=no > "$OUT_DIR/$t.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  grep -E "seed|^\[  (PASSED|FAILED) |OK \]|FAILED|Failure|differ|cublasLt|free SMs" \
    "$OUT_DIR/$t.log" | head -60
  echo "$t exit code $rc"
done
echo "== bench_gemm $*"
timeout 300 "$BIN_DIR/bench_gemm" "$OUT_DIR/bench" "$@" > "$OUT_DIR/bench.log" 2>&1 || status=1
cat "$OUT_DIR/bench.log"
if [ "${GEMM_NCU:-0}" = 1 ]; then  # stall reasons and memory traffic of three representative calls
  {
    for case in "0.6B qkv:4096" "8B gate_up:64" "8B gate_up:1" "0.6B o:1"; do
      echo "== ncu ${case}"
      timeout 120 ncu --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \
        --section Occupancy -k regex:linear_bf16 --launch-skip 3 --launch-count 1 \
        "$BIN_DIR/bench_gemm" /tmp/ncu_bench --only "${case%%:*}" --m "${case##*:}" 2>&1 |
        grep -vE "^==PROF==|^    -----" | head -150
    done
    echo "== sass"
    cuobjdump -sass "$BIN_DIR/bench_gemm" | grep -oE "HMMA[.A-Z0-9]*|LDSM[.A-Z0-9]*|LDGSTS[.A-Z0-9]*|LDL|STL|BAR.SYNC" | sort | uniq -c
  } > "$OUT_DIR/ncu.log" 2>&1
  grep -E "^== |Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|L2 Hit|Achieved Occupancy|Stall" "$OUT_DIR/ncu.log" | head -60
fi
exit $status
