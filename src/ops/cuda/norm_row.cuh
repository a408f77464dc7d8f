// The register-resident RMSNorm row that norm.cu (rms_norm_vec_kernel) and moe_combine_norm.cu
// (combine + residual add + norm) share: the threads per row (a function of D alone: the
// reduction tree), the weights read into registers (before pdl_wait), and the end of the norm
// (block_sum of the per-thread sums of squares, one inverse, w * (v * inv) rounded to bf16).
// Thread t owns the 8-element groups t, t + T, ... of the row; the caller adds its squares in
// ascending element order. One definition, so the two kernels cannot drift apart in bits.
#pragma once

#include "ops/cuda/cuda_common.cuh"

namespace bitexact::ops::cuda::norm_row {

// Threads per row, from D only (the reduction tree must not depend on the batch).
inline int threads_for(int64_t d) { return d <= 256 ? 32 : d <= 2048 ? 128 : 256; }

// Group gi of this thread: elements [8g, 8g + 8) with g = threadIdx.x + gi * kThreads.
template <int kThreads>
__device__ __forceinline__ int64_t group(int gi) {
  return threadIdx.x + int64_t(gi) * kThreads;
}

// The norm weights of this thread's groups, as f32 (0 past D). No kernel writes weights, so this
// may run before pdl_wait.
template <int kThreads, int kGroups, typename W>
__device__ __forceinline__ void load_weights(const W* __restrict__ w, int64_t d,
                                             float (&wv)[kGroups][8]) {
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int64_t g = group<kThreads>(gi);
#pragma unroll
    for (int j = 0; j < 8; ++j) wv[gi][j] = g * 8 < d ? to_f32(w[g * 8 + j]) : 0.0f;
  }
}

// Eight bf16 at p: one 16-byte access when `vec` (p 16-byte aligned), else eight 2-byte ones.
__device__ __forceinline__ uint4 load8(const __nv_bfloat16* p, bool vec) {
  if (vec) return *reinterpret_cast<const uint4*>(p);
  uint4 u;
  __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&u);
#pragma unroll
  for (int j = 0; j < 8; ++j) e[j] = p[j];
  return u;
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, bool vec, const uint4& u) {
  if (vec) {
    *reinterpret_cast<uint4*>(p) = u;
  } else {
    const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
    for (int j = 0; j < 8; ++j) p[j] = e[j];
  }
}
__device__ __forceinline__ float elem(const uint4& u, int j) {
  return to_f32(reinterpret_cast<const __nv_bfloat16*>(&u)[j]);
}

// The end of the norm: acc = this thread's sum of squares (its groups in order), v = the row
// values it normalises. Writes out[i] = bf16(w[i] * (v[i] * inv)).
template <int kThreads, int kGroups>
__device__ __forceinline__ void finish(float acc, const float (&v)[kGroups][8],
                                       const float (&wv)[kGroups][8], int64_t d, float eps,
                                       float* scratch, __nv_bfloat16* out, bool vec) {
  const float ss = block_sum<kThreads>(acc, scratch);
  const float inv = 1.0f / sqrtf(ss / float(d) + eps);
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int64_t g = group<kThreads>(gi);
    if (g * 8 >= d) break;
    uint4 o;
    __nv_bfloat16* oe = reinterpret_cast<__nv_bfloat16*>(&o);
#pragma unroll
    for (int j = 0; j < 8; ++j) oe[j] = from_f32<__nv_bfloat16>(wv[gi][j] * (v[gi][j] * inv));
    store8(out + g * 8, vec, o);
  }
}

}  // namespace bitexact::ops::cuda::norm_row
