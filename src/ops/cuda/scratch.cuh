// Per-device scratch arrays of the kernels whose CTAs hand data to a last-arriving CTA (top-k
// slice candidates, log-sum-exp slice partials, arrival counters). They only grow, and never
// during a CUDA graph capture: a captured graph keeps the pointers it was captured with, so the
// first call of a shape must run eagerly. Counters start (and are left by the kernels) at zero.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/cuda/cuda_common.cuh"

namespace bitexact::ops::cuda {

struct ScratchArray {
  void* ptr = nullptr;
  int64_t len = 0;  // elements
};

// Grows `a` to at least `want` elements of `elem` bytes (and at least `min_len`), zero-filled if
// `zero`. Throws kUnsupported naming `op` when it would have to grow inside a capture on `st`.
inline void grow_scratch(ScratchArray& a, int64_t want, int64_t min_len, size_t elem, bool zero,
                         cudaStream_t st, const char* op) {
  if (a.len >= want) return;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  BITEXACT_CUDA_CHECK(cudaStreamIsCapturing(st, &cap));
  if (cap != cudaStreamCaptureStatusNone)
    unsupported(op, "a scratch buffer must grow during a graph capture; run the shape once "
                    "before capturing");
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());  // the old buffer may still be in use
  BITEXACT_CUDA_CHECK(cudaFree(a.ptr));
  a.len = std::max(want, min_len);
  BITEXACT_CUDA_CHECK(cudaMalloc(&a.ptr, size_t(a.len) * elem));
  if (zero) {
    BITEXACT_CUDA_CHECK(cudaMemset(a.ptr, 0, size_t(a.len) * elem));
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
  }
}

inline int current_device() {
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

}  // namespace bitexact::ops::cuda
