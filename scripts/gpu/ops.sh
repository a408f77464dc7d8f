#!/usr/bin/env bash
# Runs the CUDA op tests, the attention benchmark and its torch peer on the GPU machine, logging
# everything to OUTDIR and printing a short table last. Usage: scripts/gpu/ops.sh OUTDIR [BINDIR]
# BINDIR holds ops_cuda_test, attention_cuda_test, bench_attention (default: build/src/ops/cuda).
set -uo pipefail
out=${1:?usage: ops.sh OUTDIR [BINDIR]}
bin=${2:-build/src/ops/cuda}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$out/summary.txt" 2>&1
status=0
for t in ops_cuda_test attention_cuda_test; do
  if [ -x "$bin/$t" ]; then
    # One process per test case: a CUDA fault in one case cannot hide the others' results.
    for c in $("$bin/$t" --gtest_list_tests | awk '/^[^ ]/{s=$1} /^  /{print s $1}'); do
      timeout "${TEST_TIMEOUT:-120}" "$bin/$t" --gtest_color=no --gtest_filter="$c" >> "$out/$t.log" 2>&1
      rc=$?
      printf '%-55s %s\n' "$c" "$([ $rc -eq 0 ] && echo PASS || echo "FAIL rc=$rc")" | tee -a "$out/summary.txt"
      [ $rc -ne 0 ] && status=1
    done
  else
    echo "$t missing in $bin" | tee -a "$out/summary.txt"; status=1
  fi
done
timeout "${BENCH_TIMEOUT:-100}" "$bin/bench_attention" > "$out/bench_attention.csv" 2>&1 || status=1
PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-100}" python3 "$here/bench_attention_peer.py" > "$out/bench_peer.csv" 2>&1 || status=1
python3 - "$out/bench_attention.csv" "$out/bench_peer.csv" <<'PY' | tee "$out/table.txt"
import sys
ours = [l.strip().split(",") for l in open(sys.argv[1]) if l.startswith(("decode,", "prefill,"))]
peer = {(r[0].replace("peer_", ""), r[2], r[3]): r for r in
        (l.strip().split(",") for l in open(sys.argv[2]) if l.startswith("peer_"))}
print(f"{'case':<22}{'mode':<8}{'ours us':>10}{'floor us':>10}{'floor/ours':>11}{'peer us':>10}{'peer/ours':>10}")
for r in ours:
    kind, mode, b, c, us = r[0], r[1], r[2], r[3], float(r[4])
    p = peer.get((kind, b, c))
    pus = float(p[4]) if p else float("nan")
    extra = f"{float(r[5]):>10.2f}{float(r[6]):>11.3f}" if kind == "decode" else f"{r[5]+' TF':>10}{'':>11}"
    print(f"{kind+' b'+b+' n'+c:<22}{mode:<8}{us:>10.2f}{extra}{pus:>10.2f}{pus/us:>10.2f}")
PY
exit $status
