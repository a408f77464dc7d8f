// Shared helpers of the CUDA backend: the error-check macro, the stream of an ExecContext, bf16 /
// f16 / f32 loads and stores in f32, and a fixed-shape block reduction. Every reduction helper
// here has an order fixed by the block size alone, never by the grid, so rows stay independent.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "ops/ops.h"

#define BITEXACT_CUDA_CHECK(expr)                                                                 \
  do {                                                                                            \
    cudaError_t bitexact_err_ = (expr);                                                           \
    if (bitexact_err_ != cudaSuccess)                                                             \
      ::bitexact::fail(::bitexact::ErrorKind::kInternal,                                          \
                       std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #expr ": " + \
                           cudaGetErrorString(bitexact_err_));                                    \
  } while (0)

// Checks the launch that just happened (bad configuration, missing kernel image).
#define BITEXACT_CUDA_CHECK_LAUNCH() BITEXACT_CUDA_CHECK(cudaGetLastError())

namespace bitexact::ops::cuda {

inline cudaStream_t stream_of(const ExecContext& ctx) {
  return static_cast<cudaStream_t>(ctx.stream);
}

[[noreturn]] inline void unsupported(const char* op, const std::string& what) {
  fail(ErrorKind::kUnsupported, std::string("cuda ") + op + ": " + what);
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

// Element loads and stores through f32. bf16 and f16 conversions round to nearest even, the
// same rounding as core/dtype.h on the host.
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}

// Reads element i of a tensor whose dtype is known only at run time (weights, tables).
__device__ __forceinline__ float load_any(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DType::kI32:
      return float(static_cast<const int32_t*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store_any(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      break;
    case DType::kF16:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      break;
    case DType::kI32:
      static_cast<int32_t*>(p)[i] = int32_t(v);
      break;
    default:
      static_cast<float*>(p)[i] = v;
  }
}

// The largest 64-bit key over a warp (xor-shuffles; max is exact in any order): the top-k
// rounds of top_tokens and of the MoE router.
__device__ __forceinline__ uint64_t warp_max_key(uint64_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return v;
}

// Sum over a block of kThreads threads: each warp reduces by xor-shuffles (offsets 16..1), then
// warp 0 reduces the per-warp sums the same way. The tree depends on kThreads only, so every row
// reduced with the same kThreads gets the same order. `scratch` holds kThreads/32 floats.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size");
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  constexpr int kWarps = kThreads / 32;
  if constexpr (kWarps == 1) return v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float w = lane < kWarps ? scratch[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) w += __shfl_xor_sync(0xffffffffu, w, o);
  return w;  // every thread holds the same total
}

template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  constexpr int kWarps = kThreads / 32;
  if constexpr (kWarps == 1) return v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float w = lane < kWarps ? scratch[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) w = fmaxf(w, __shfl_xor_sync(0xffffffffu, w, o));
  return w;
}

// Row addressing shared by the row ops: a rank-2 [R, D] or rank-3 [M, H, D] tensor is a list of
// contiguous rows at outer strides (q heads inside a fused qkv row, for instance).
struct RowLayout {
  int64_t inner = 1;    // rows per outer index (H for rank 3, 1 for rank 2)
  int64_t stride0 = 0;  // elements between outer indices
  int64_t stride1 = 0;  // elements between inner rows
  __host__ __device__ int64_t offset(int64_t r) const {
    return (r / inner) * stride0 + (r % inner) * stride1;
  }
};

inline RowLayout row_layout(const Tensor& t) {
  RowLayout l;
  if (t.ndim == 3) {
    l.inner = t.shape[1];
    l.stride0 = t.stride[0];
    l.stride1 = t.stride[1];
  } else {
    l.stride0 = t.stride[0];
  }
  return l;
}

inline int64_t num_rows(const Tensor& t) {
  return t.ndim == 3 ? t.shape[0] * t.shape[1] : t.shape[0];
}

// A kernel's dynamic shared memory limit, raised to `bytes` once per device (the opt-in is a
// per-device attribute; bit per device in `done`). Always set, even for <= 48 KB: the limit
// covers static plus dynamic shared memory, so a kernel with 48 KB dynamic and a few static
// bytes needs it too. Two threads may both set it the first time; that is harmless.
template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, int bytes, std::atomic<uint64_t>& done) {
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  if (done.load() >> dev & 1) return;
  BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.fetch_or(uint64_t(1) << dev);
}

}  // namespace bitexact::ops::cuda
