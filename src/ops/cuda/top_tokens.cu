// CUDA top_tokens: one CTA per row. Each thread keeps its n best keys (ops/top_key.h) of a
// strided slice in registers, then n rounds of a block-wide max pop the winners in order. Keys
// are unique per column, so the result is the exact top-n whatever the launch shape or the order
// in which a thread scans its slice.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/pdl.cuh"
#include "ops/top_key.h"

namespace bitexact::ops::cuda {
namespace {

template <int kThreads, int kMaxN, typename T>
__global__ void __launch_bounds__(kThreads)
    top_tokens_kernel(const T* __restrict__ x, int64_t xs, int64_t v, int n, int32_t* __restrict__ ids,
                      float* __restrict__ vals) {
  __shared__ uint64_t warp_best[kThreads / 32];
  pdl_wait();
  pdl_launch_dependents();
  const T* row = x + blockIdx.x * xs;
  uint64_t best[kMaxN];  // descending; 0 = empty (every real key, NaN's too, is above 0)
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) best[j] = 0;
  uint64_t floor_key = 0;  // best[n-1]: a key must beat it to enter
  auto consider = [&](float val, int64_t i) {
    uint64_t k = top_key(val, int32_t(i));
    if (k <= floor_key) return;
#pragma unroll
    for (int j = 0; j < kMaxN; ++j)  // insertion by bubbling: indices stay compile-time
      if (j < n && k > best[j]) {
        const uint64_t t = best[j];
        best[j] = k;
        k = t;
      }
#pragma unroll
    for (int j = 0; j < kMaxN; ++j)
      if (j == n - 1) floor_key = best[j];
  };
  // The top-n of unique keys is a function of the set of (value, column) pairs, so the scan
  // order is free: bf16 rows on 16-byte boundaries are read 8 values per load, kUnroll loads in
  // flight per thread (a greedy step's logits row is ~300 KB; scalar loads left it latency-bound).
  int64_t done = 0;
  if constexpr (sizeof(T) == 2) {
    if (reinterpret_cast<uintptr_t>(row) % 16 == 0) {
      constexpr int kUnroll = 4;
      const uint4* row8 = reinterpret_cast<const uint4*>(row);
      const int64_t groups = v / 8;
      for (int64_t g0 = threadIdx.x; g0 < groups; g0 += int64_t(kThreads) * kUnroll) {
        uint4 pack[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t g = g0 + int64_t(u) * kThreads;
          pack[u] = g < groups ? __ldg(row8 + g) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t g = g0 + int64_t(u) * kThreads;
          if (g >= groups) break;
          const T* e = reinterpret_cast<const T*>(&pack[u]);
#pragma unroll
          for (int j = 0; j < 8; ++j) consider(to_f32(e[j]), g * 8 + j);
        }
      }
      done = groups * 8;
    }
  }
  for (int64_t i = done + threadIdx.x; i < v; i += kThreads) consider(to_f32(row[i]), i);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int round = 0; round < n; ++round) {
    const uint64_t w = warp_max_key(best[0]);
    if (lane == 0) warp_best[warp] = w;
    __syncthreads();
    uint64_t top = lane < kThreads / 32 ? warp_best[lane] : 0;
    top = warp_max_key(top);
    if (best[0] == top && top != 0) {  // the one owner (keys are unique) pops its head
#pragma unroll
      for (int j = 0; j + 1 < kMaxN; ++j) best[j] = best[j + 1];
      best[kMaxN - 1] = 0;
    }
    if (threadIdx.x == 0) {
      // Fewer than n real keys can only happen with NaN rows: report column 0's value then.
      const int32_t col = top == 0 ? 0 : top_key_column(top);
      ids[blockIdx.x * n + round] = col;
      vals[blockIdx.x * n + round] = to_f32(row[col]);
    }
    __syncthreads();  // warp_best is rewritten next round
  }
}

template <typename T>
void launch(const Tensor& x, Tensor& ids, Tensor& vals, cudaStream_t st) {
  const int n = int(ids.dim(1));
  const unsigned rows = unsigned(x.dim(0));
  if (n == 1)
    BITEXACT_CUDA_CHECK(launch_pdl(top_tokens_kernel<512, 1, T>, dim3(rows), dim3(512), 0, st,
                                   x.ptr<T>(), x.stride[0], x.dim(1), n, ids.ptr<int32_t>(),
                                   vals.ptr<float>()));
  else
    BITEXACT_CUDA_CHECK(launch_pdl(top_tokens_kernel<256, kMaxTopTokens, T>, dim3(rows), dim3(256),
                                   0, st, x.ptr<T>(), x.stride[0], x.dim(1), n,
                                   ids.ptr<int32_t>(), vals.ptr<float>()));
}

}  // namespace

void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals) {
  if (x.dim(0) == 0) return;
  if (x.dtype == DType::kBF16)
    launch<__nv_bfloat16>(x, ids, vals, stream_of(ctx));
  else
    launch<float>(x, ids, vals, stream_of(ctx));
}

}  // namespace bitexact::ops::cuda
