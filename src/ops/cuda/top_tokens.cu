// CUDA top_tokens. Each thread keeps its n best keys (ops/top_key.h) of a strided part of the
// columns in registers, then n rounds of a block-wide max pop the winners in order. Keys are
// unique per column, so the top-n is one set in one order whatever the launch shape or scan
// order. Long rows (a vocabulary: ~150k columns) are cut into column slices, one CTA each, so a
// greedy step's top-1 is not one SM's work: each slice's CTA publishes its n best keys, and the
// last CTA of the row to finish (integer counter) pops the row's n best from those candidates,
// which hold the row's top-n because the keys are unique.
// top_tokens_minus ranks x - minus[row] instead of x (f32 subtraction, the value log_softmax
// writes): top_logprobs (softmax.cu) uses it so that no vocabulary-sized row is written.
// Subtracting +0 leaves every value's bits unchanged, so plain top_tokens is minus = 0.
#include <map>
#include <mutex>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/last_arrival.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/cuda/scratch.cuh"
#include "ops/top_key.h"

namespace bitexact::ops::cuda {
namespace {

constexpr int64_t kSliceColumns = 8192;  // columns per CTA of a sliced row
constexpr int kMaxSlices = 64;

// A thread's n best keys, descending; 0 = empty (every real key, NaN's too, is above 0).
template <int kMaxN>
struct TopList {
  uint64_t best[kMaxN];
  uint64_t floor_key;  // best[n-1]: a key must beat it to enter
  int n;
  __device__ __forceinline__ void init(int n_) {
    n = n_;
    floor_key = 0;
#pragma unroll
    for (int j = 0; j < kMaxN; ++j) best[j] = 0;
  }
  __device__ __forceinline__ void consider(uint64_t k) {
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
  }
};

// Considers columns [c0, c1) of `row`. The scan order is free (see the header): bf16 columns on
// 16-byte boundaries are read 8 per load, kUnroll loads in flight per thread.
template <int kThreads, int kMaxN, typename T>
__device__ __forceinline__ void scan_columns(const T* row, int64_t c0, int64_t c1, float minus,
                                             TopList<kMaxN>& t) {
  int64_t done = c0;
  if constexpr (sizeof(T) == 2) {
    if (reinterpret_cast<uintptr_t>(row + c0) % 16 == 0) {
      constexpr int kUnroll = 4;
      const uint4* row8 = reinterpret_cast<const uint4*>(row + c0);
      const int64_t groups = (c1 - c0) / 8;
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
          for (int j = 0; j < 8; ++j)
            t.consider(top_key(__fsub_rn(to_f32(e[j]), minus), int32_t(c0 + g * 8 + j)));
        }
      }
      done = c0 + groups * 8;
    }
  }
  for (int64_t i = done + threadIdx.x; i < c1; i += kThreads)
    t.consider(top_key(__fsub_rn(to_f32(row[i]), minus), int32_t(i)));
}

// One round of the block-wide max: every thread gets the largest remaining key (0 when none),
// and its one owner (keys are unique) pops it.
template <int kThreads, int kMaxN>
__device__ __forceinline__ uint64_t pop_round(TopList<kMaxN>& t, uint64_t* warp_best) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t w = warp_max_key(t.best[0]);
  if (lane == 0) warp_best[warp] = w;
  __syncthreads();
  uint64_t top = lane < kThreads / 32 ? warp_best[lane] : 0;
  top = warp_max_key(top);
  if (t.best[0] == top && top != 0) {
#pragma unroll
    for (int j = 0; j + 1 < kMaxN; ++j) t.best[j] = t.best[j + 1];
    t.best[kMaxN - 1] = 0;
  }
  __syncthreads();  // warp_best is rewritten next round
  return top;
}

struct SliceScratch {
  uint64_t* cand;  // [rows, slices, n]: each slice's n best keys
  int* counters;   // [rows]: finished slices; the last one resets it to 0
};

// Grid (rows, slices). slices == 1: the CTA owns the whole row and writes the result.
template <int kThreads, int kMaxN, typename T>
__global__ void __launch_bounds__(kThreads)
    top_tokens_kernel(const T* __restrict__ x, int64_t xs, int64_t v, int n, int64_t slice,
                      SliceScratch scratch, const float* __restrict__ minus_row,
                      int32_t* __restrict__ ids, float* __restrict__ vals) {
  __shared__ uint64_t warp_best[kThreads / 32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  const int slices = gridDim.y;
  const T* row = x + r * xs;
  const float minus = minus_row ? minus_row[r] : 0.0f;
  TopList<kMaxN> t;
  t.init(n);
  const int64_t c0 = blockIdx.y * slice;
  scan_columns<kThreads>(row, c0, min(v, c0 + slice), minus, t);
  if (slices > 1) {
    uint64_t* cand = scratch.cand + r * slices * n;
    for (int round = 0; round < n; ++round) {
      const uint64_t top = pop_round<kThreads>(t, warp_best);
      if (threadIdx.x == 0) __stcg(cand + int64_t(blockIdx.y) * n + round, top);
    }
    // Whichever CTA is last merges; the merge is a function of the set of candidates alone.
    if (!last_to_arrive(scratch.counters + r, slices)) return;
    t.init(n);
    for (int i = threadIdx.x; i < slices * n; i += kThreads) t.consider(__ldcg(cand + i));
  }
  for (int round = 0; round < n; ++round) {
    const uint64_t top = pop_round<kThreads>(t, warp_best);
    if (threadIdx.x == 0) {
      // Fewer than n real keys can only happen with NaN rows: report column 0's value then.
      const int32_t col = top == 0 ? 0 : top_key_column(top);
      ids[r * n + round] = col;
      vals[r * n + round] = __fsub_rn(to_f32(row[col]), minus);
    }
  }
}

// Per-device candidates and counters of sliced rows (scratch.cuh).
SliceScratch slice_scratch(int64_t rows, int slices, int n, cudaStream_t st) {
  struct Buffers {
    ScratchArray cand, counters;
  };
  static std::mutex mu;
  static std::map<int, Buffers> per_device;
  std::lock_guard<std::mutex> lock(mu);
  Buffers& b = per_device[current_device()];
  grow_scratch(b.cand, rows * slices * n, 1 << 16, sizeof(uint64_t), false, st, "top_tokens");
  grow_scratch(b.counters, rows, 1024, sizeof(int), true, st, "top_tokens");
  return {static_cast<uint64_t*>(b.cand.ptr), static_cast<int*>(b.counters.ptr)};
}

template <typename T>
void launch(const Tensor& x, const float* minus, Tensor& ids, Tensor& vals, int slices_forced,
            cudaStream_t st) {
  const int n = int(ids.dim(1));
  const int64_t rows = x.dim(0), v = x.dim(1);
  int slices = slices_forced > 0
                   ? slices_forced
                   : int(std::min<int64_t>(kMaxSlices, (v + kSliceColumns - 1) / kSliceColumns));
  // Slices of whole 8-column groups (vector loads stay aligned); no empty slice.
  const int64_t slice = ((v + slices - 1) / slices + 7) / 8 * 8;
  slices = int((v + slice - 1) / slice);
  const SliceScratch scratch = slices > 1 ? slice_scratch(rows, slices, n, st) : SliceScratch{};
  const dim3 grid{unsigned(rows), unsigned(slices), 1u};
  if (n == 1)
    BITEXACT_CUDA_CHECK(launch_pdl(top_tokens_kernel<512, 1, T>, grid, dim3(512), 0, st, x.ptr<T>(),
                                   x.stride[0], v, n, slice, scratch, minus, ids.ptr<int32_t>(),
                                   vals.ptr<float>()));
  else
    BITEXACT_CUDA_CHECK(launch_pdl(top_tokens_kernel<256, kMaxTopTokens, T>, grid, dim3(256), 0, st,
                                   x.ptr<T>(), x.stride[0], v, n, slice, scratch, minus,
                                   ids.ptr<int32_t>(), vals.ptr<float>()));
}

}  // namespace

void top_tokens_sliced(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals,
                       int slices) {
  if (x.dim(0) == 0) return;
  if (x.dtype == DType::kBF16)
    launch<__nv_bfloat16>(x, nullptr, ids, vals, slices, stream_of(ctx));
  else
    launch<float>(x, nullptr, ids, vals, slices, stream_of(ctx));
}

void top_tokens_minus(const ExecContext& ctx, const Tensor& x, const float* minus, Tensor& ids,
                      Tensor& vals) {
  if (x.dim(0) == 0) return;
  if (x.dtype == DType::kBF16)
    launch<__nv_bfloat16>(x, minus, ids, vals, 0, stream_of(ctx));
  else
    launch<float>(x, minus, ids, vals, 0, stream_of(ctx));
}

void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals) {
  top_tokens_sliced(ctx, x, ids, vals, 0);
}

}  // namespace bitexact::ops::cuda
