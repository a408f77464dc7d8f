#!/usr/bin/env bash
# Builds the CUDA binaries on the build machine (nvcc, no GPU needed) and gathers them, stripped,
# with the shared libraries the device machine lacks, into BINDIR for `run(carry=[BINDIR])`.
# Usage: scripts/gpu_build.sh [BINDIR (default .carry/gpu)]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.carry/gpu}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=(model_cuda_test ops_cuda_test attention_cuda_test linear_cuda_test linear_invariance_test
         top_tokens_cuda_test bench_decode bench_gemm bench_attention bitexact)
# Targets added by later work (e.g. the MoE tests) are built when they exist.
for t in moe_cuda_test; do
  ninja -C build-gpu -t targets all | grep -q "^$t:" && targets+=("$t")
done
cmake --build build-gpu -j"${BITEXACT_JOBS:-$(nproc)}" --target "${targets[@]}"
mkdir -p "$bin"
for t in "${targets[@]}"; do
  f=$(find build-gpu -type f -name "$t" -perm -u+x | head -1)
  cp "$f" "$bin/$t" && strip "$bin/$t"
done
for lib in libutf8proc.so.2 libpcre2-8.so.0 libcpp-httplib.so.0.11 libbrotlidec.so.1 libbrotlienc.so.1 libbrotlicommon.so.1; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$bin/$lib"
done
du -sh "$bin"
