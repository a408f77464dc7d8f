// CUDA log-softmax and top log-probabilities over rows of logits (bf16 or f32 in, f32 out).
// Both rest on one row log-sum-exp. The row is cut into column slices of at most 8192 (their
// number a function of V alone), one CTA each: a CTA finds its slice's max m_s (exact in any
// order) and s_s = the sum of exp(x - m_s) in a fixed order (thread t: the 8-column groups t,
// t + 256, ... of the slice, ascending, then block_sum's fixed tree); the last CTA of the row to
// finish (integer counter) folds the slices in slice order, L = sum_s s_s * exp(m_s - M) with M
// the row max, lse = M + log(L). A row's lse thus depends on V and its own values only, and a
// greedy step's log-softmax is ~19 CTAs' work instead of one SM's.
// log_softmax writes x - lse; top_logprobs runs top_tokens on x - lse without writing the row, so
// it returns exactly top_tokens(log_softmax(x)) (same values, same order) at a fraction of the
// traffic.
#include <map>
#include <mutex>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/last_arrival.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/cuda/scratch.cuh"

namespace bitexact::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSliceColumns = 8192;
constexpr int kGroupsPerThread = int(kSliceColumns / 8 / kThreads);  // 4: the slice in registers

struct LseScratch {
  float2* part;   // [rows, slices]: (m_s, s_s)
  int* counters;  // [rows]: finished slices; the last one resets it to 0
  float* lse;     // [rows]
};

// Columns [c, c + 8) as floats; columns at or past v read as -inf, which adds an exact +0 to the
// sum below. The values do not depend on which load is used, so neither does any result.
template <typename T>
__device__ __forceinline__ void load_group(const T* row, int64_t c, int64_t v, bool aligned,
                                           float (&e)[8]) {
  if (aligned && c + 8 <= v) {
    if constexpr (sizeof(T) == 2) {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(row + c));
      const T* h = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int j = 0; j < 8; ++j) e[j] = to_f32(h[j]);
    } else {
      const float4 a = __ldg(reinterpret_cast<const float4*>(row + c));
      const float4 b = __ldg(reinterpret_cast<const float4*>(row + c + 4));
      e[0] = a.x, e[1] = a.y, e[2] = a.z, e[3] = a.w, e[4] = b.x, e[5] = b.y, e[6] = b.z, e[7] = b.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) e[j] = c + j < v ? to_f32(row[c + j]) : -INFINITY;
  }
}

// Grid (rows, slices), kThreads threads; `slice` columns per CTA, a multiple of 8.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_lse_kernel(const T* __restrict__ x, int64_t xs, int64_t v, int64_t slice, LseScratch sc) {
  __shared__ float scratch[kThreads / 32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  const int slices = gridDim.y;
  const T* row = x + r * xs;
  const int64_t c0 = blockIdx.y * slice, c1 = min(v, c0 + slice);
  const bool aligned = reinterpret_cast<uintptr_t>(row) % 16 == 0;
  float e[kGroupsPerThread][8];
  float mx = -INFINITY;
#pragma unroll
  for (int g = 0; g < kGroupsPerThread; ++g) {
    load_group(row, c0 + (int64_t(g) * kThreads + threadIdx.x) * 8, c1, aligned, e[g]);
#pragma unroll
    for (int j = 0; j < 8; ++j) mx = fmaxf(mx, e[g][j]);
  }
  mx = block_max<kThreads>(mx, scratch);
  float s = 0.0f;
  if (mx != -INFINITY) {  // a slice of -inf only (masked columns) adds nothing
#pragma unroll
    for (int g = 0; g < kGroupsPerThread; ++g)
#pragma unroll
      for (int j = 0; j < 8; ++j) s = __fadd_rn(s, expf(__fsub_rn(e[g][j], mx)));
  }
  s = block_sum<kThreads>(s, scratch);
  if (slices > 1) {
    if (threadIdx.x == 0) __stcg(sc.part + r * slices + blockIdx.y, make_float2(mx, s));
    if (!last_to_arrive(sc.counters + r, slices) || threadIdx.x != 0) return;
    // The fold reads every slice in slice order, so the arrival order never reaches the bits.
    mx = -INFINITY;
    for (int i = 0; i < slices; ++i) mx = fmaxf(mx, __ldcg(sc.part + r * slices + i).x);
    s = 0.0f;
    for (int i = 0; i < slices; ++i) {
      const float2 p = __ldcg(sc.part + r * slices + i);
      if (p.x != -INFINITY) s = __fadd_rn(s, __fmul_rn(p.y, expf(__fsub_rn(p.x, mx))));
    }
  } else if (threadIdx.x != 0) {
    return;
  }
  sc.lse[r] = __fadd_rn(mx, logf(s));
}

// out[r, c] = x[r, c] - lse[r]; grid (rows, ceil(v / (8 kThreads))): rows on x, whose limit is
// 2^31 - 1 (a prefill with prompt logprobs may have more than 65535 rows).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sub_lse_kernel(const T* __restrict__ x, int64_t xs, const float* __restrict__ lse,
                   float* __restrict__ out, int64_t os, int64_t v) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x, c = (int64_t(blockIdx.y) * kThreads + threadIdx.x) * 8;
  if (c >= v) return;
  const T* row = x + r * xs;
  float e[8];
  load_group(row, c, v, reinterpret_cast<uintptr_t>(row) % 16 == 0, e);
  const float l = lse[r];
  float* o = out + r * os;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    if (c + j < v) o[c + j] = __fsub_rn(e[j], l);
}

// Per-device slice partials, counters and lse values (scratch.cuh).
LseScratch lse_scratch(int64_t rows, int slices, cudaStream_t st) {
  struct Buffers {
    ScratchArray part, counters, lse;
  };
  static std::mutex mu;
  static std::map<int, Buffers> per_device;
  std::lock_guard<std::mutex> lock(mu);
  Buffers& b = per_device[current_device()];
  grow_scratch(b.part, rows * slices, 1 << 14, sizeof(float2), false, st, "log_softmax");
  grow_scratch(b.counters, rows, 1024, sizeof(int), true, st, "log_softmax");
  grow_scratch(b.lse, rows, 1024, sizeof(float), false, st, "log_softmax");
  return {static_cast<float2*>(b.part.ptr), static_cast<int*>(b.counters.ptr),
          static_cast<float*>(b.lse.ptr)};
}

// Launches row_lse_kernel for every row of x; returns the device pointer of lse[rows].
template <typename T>
const float* launch_lse(const Tensor& x, cudaStream_t st) {
  const int64_t rows = x.dim(0), v = x.dim(1);
  int slices = int((v + kSliceColumns - 1) / kSliceColumns);
  // Slices of whole 8-column groups, none empty, none longer than kSliceColumns.
  const int64_t slice = ((v + slices - 1) / slices + 7) / 8 * 8;
  slices = int((v + slice - 1) / slice);
  const LseScratch sc = lse_scratch(rows, slices, st);
  BITEXACT_CUDA_CHECK(launch_pdl(row_lse_kernel<T>, dim3(unsigned(rows), unsigned(slices)),
                                 dim3(kThreads), 0, st, x.ptr<T>(), x.stride[0], v, slice, sc));
  return sc.lse;
}

template <typename T>
void launch_log_softmax(const Tensor& x, Tensor& out, cudaStream_t st) {
  const float* lse = launch_lse<T>(x, st);
  const int64_t rows = x.dim(0), v = x.dim(1);
  const dim3 grid(unsigned(rows), unsigned((v + 8 * kThreads - 1) / (8 * kThreads)));
  BITEXACT_CUDA_CHECK(launch_pdl(sub_lse_kernel<T>, grid, dim3(kThreads), 0, st, x.ptr<T>(),
                                 x.stride[0], lse, out.ptr<float>(), out.stride[0], v));
}

}  // namespace

void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out) {
  if (logits.dim(0) == 0) return;
  switch (logits.dtype) {
    case DType::kBF16: return launch_log_softmax<__nv_bfloat16>(logits, out, stream_of(ctx));
    case DType::kF32: return launch_log_softmax<float>(logits, out, stream_of(ctx));
    default: unsupported("log_softmax", "logits must be BF16 or F32");
  }
}

const float* row_lse(const ExecContext& ctx, const Tensor& logits) {
  switch (logits.dtype) {
    case DType::kBF16: return launch_lse<__nv_bfloat16>(logits, stream_of(ctx));
    case DType::kF32: return launch_lse<float>(logits, stream_of(ctx));
    default: unsupported("row_lse", "logits must be BF16 or F32");
  }
}

void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals) {
  if (logits.dim(0) == 0) return;
  const float* lse = nullptr;
  switch (logits.dtype) {
    case DType::kBF16: lse = launch_lse<__nv_bfloat16>(logits, stream_of(ctx)); break;
    case DType::kF32: lse = launch_lse<float>(logits, stream_of(ctx)); break;
    default: unsupported("top_logprobs", "logits must be BF16 or F32");
  }
  top_tokens_minus(ctx, logits, lse, ids, vals);
}

}  // namespace bitexact::ops::cuda
