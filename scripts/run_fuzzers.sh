#!/usr/bin/env bash
# Builds every libFuzzer target (fuzz/CMakeLists.txt) with clang in build-fuzz and runs each for
# SECONDS (default 60) from its seeds, fuzz/corpus/<target>/ and fuzz/dict/<target>.dict. Exits
# non-zero if any target finds a crash, leak, timeout or sanitizer report; reproducers land in
# build-fuzz/artifacts/<target>/.
# Usage: scripts/run_fuzzers.sh [SECONDS] [TARGET...]
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
jobs="${BITEXACT_FUZZ_BUILD_JOBS:-2}"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DBITEXACT_FUZZ=ON -DBITEXACT_TESTS=OFF -DBITEXACT_CUDA=OFF >/dev/null

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  # Every executable whose name starts with fuzz_ that fuzz/CMakeLists.txt defines.
  mapfile -t targets < <(sed -n 's/^bitexact_add_fuzzer(\(fuzz_[A-Za-z0-9_]*\).*/\1/p' \
    "$root/fuzz/CMakeLists.txt")
fi
cmake --build "$build" --target "${targets[@]}" -j "$jobs"

status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"        # grows as the fuzzer finds new coverage; seeds stay untouched
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  seeds=()
  [[ -d "$root/fuzz/corpus/$t" ]] && seeds=("$root/fuzz/corpus/$t")
  dict=()
  [[ -f "$root/fuzz/dict/$t.dict" ]] && dict=("-dict=$root/fuzz/dict/$t.dict")
  echo "== $t for ${seconds}s"
  if ! "$build/fuzz/$t" "$work" "${seeds[@]}" "${dict[@]}" -max_total_time="$seconds" -max_len=8192 \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      >"$build/$t.log" 2>&1; then
    echo "!! $t found a problem: see $build/$t.log and $artifacts/"
    tail -n 40 "$build/$t.log"
    status=1
  else
    grep -E "^stat::number_of_executed_runs|^#[0-9]+.*DONE" "$build/$t.log" | tail -n 2 || true
  fi
done
exit $status
