#!/usr/bin/env bash
# Builds the CUDA binaries on the build machine (nvcc, no GPU needed) and gathers them, stripped,
# with the shared libraries the device machine lacks, into BINDIR, then packs BINDIR into
# BINDIR.tar.zst with zstd's long-range mode (the binaries share most of their bytes: ~140 MB
# packs into ~10 MB, under what a device call carries) and puts a zstd that can unpack it in
# .carry/zstd. On the device: run(carry=[BINDIR.tar.zst, .carry/zstd]); gpu_check.sh unpacks.
# Usage: scripts/gpu_build.sh [BINDIR (default .carry/gpu)]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.carry/gpu}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# Every CUDA test binary (src/ops/cuda/tests/*_test.*, model_cuda_test, tp_cuda_test: it skips
# with one GPU) and the benchmarks.
targets=(model_cuda_test tp_cuda_test bench_decode bench_gemm bench_attention bitexact)
for f in src/ops/cuda/tests/*_test.cu src/ops/cuda/tests/*_test.cc; do
  [ -e "$f" ] && targets+=("$(basename "${f%.*}")")
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
tar -C "$(dirname "$bin")" -cf - "$(basename "$bin")" | zstd -q -f -T2 -12 --long=27 -o "$bin.tar.zst"
mkdir -p .carry/zstd
cp -L "$(command -v zstd)" .carry/zstd/
for lib in $(ldd "$(command -v zstd)" | awk '/=>/ {print $3}' | grep -v libc.so); do cp -L "$lib" .carry/zstd/; done
du -sh "$bin" "$bin.tar.zst"
