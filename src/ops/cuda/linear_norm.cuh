// The RMSNorm prologue of the decode GEMM (linear_bf16_kernel with NORM_ROWS > 0, behind
// ops::norm_linear): every CTA normalises the M <= NORM_ROWS rows of its x itself, into shared
// memory laid out as the pipeline's A stages (one swizzled [NORM_ROWS x BK] block per k-tile of
// the CTA's K range), so the add_rms_norm / rms_norm kernel before a decode projection (~1-2 us
// on a step's critical path, docs/PERFORMANCE.md) disappears.
// The bits are norm.cu's, step for step: h = bf16(residual + x) (or h = residual); virtual
// thread v of kT = norm_row::threads_for(K) adds the squares of its 8-element groups v, v + kT,
// ... in ascending element order with fmaf; block_sum<kT>'s tree (xor shuffles 16..1 per warp,
// then the same over the per-warp sums); inv = 1 / sqrt(ss / K + eps); out = bf16(w * (h * inv)).
// The GEMM has 128 threads: with kT = 256, thread t plays virtual threads t and t + 128 (virtual
// warps w and w + 4), which is the same tree with the same operands.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/linear_smem.cuh"
#include "ops/cuda/norm_row.cuh"

namespace bitexact::ops::cuda::linear_detail {

// The rows a norm-fused GEMM normalises (LinearParams::norm).
struct NormInput {
  const __nv_bfloat16* residual = nullptr;  // [M, K], row stride ldr
  const __nv_bfloat16* x = nullptr;         // [M, K] added to residual, or nullptr: h = residual
  __nv_bfloat16* residual_out = nullptr;    // [M, K]: h, written by CTA 0 when x is given
  const __nv_bfloat16* weight = nullptr;    // [K]
  int64_t ldr = 0, ldx = 0, ldo = 0;
  float eps = 0.0f;
};

// The per-row sums of block_sum<kT> for 128 threads: a[r] is virtual thread t's sum, b[r]
// virtual thread t + 128's (kT = 256 only). Returns the row totals in a. scratch: ROWS * 8 floats.
template <int kT, int ROWS>
__device__ __forceinline__ void norm_row_sums(float (&a)[ROWS], float (&b)[ROWS], float* scratch) {
  static_assert(kT == 128 || kT == 256, "the GEMM's 128 threads play 128 or 256");
  constexpr int kWarps = kT / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      a[r] += __shfl_xor_sync(0xffffffffu, a[r], o);
      if constexpr (kT == 256) b[r] += __shfl_xor_sync(0xffffffffu, b[r], o);
    }
    if (lane == 0) {
      scratch[r * 8 + warp] = a[r];
      if constexpr (kT == 256) scratch[r * 8 + warp + 4] = b[r];
    }
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    float w = lane < kWarps ? scratch[r * 8 + lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) w += __shfl_xor_sync(0xffffffffu, w, o);
    a[r] = w;
  }
}

// Thread t's virtual threads v = t + 128 h (h < kT / 128) own the 8-element groups
// g = v + kT i (i < G): K = 8 kT G exactly.
template <int kT, int G>
__device__ __forceinline__ int norm_group(int h, int i) {
  return threadIdx.x + h * 128 + i * kT;
}

// This thread's groups of the norm weight, read before pdl_wait (no kernel writes weights).
template <int kT, int G>
__device__ __forceinline__ void norm_load_weights(const NormInput& n, uint4 (&w)[kT / 128][G]) {
#pragma unroll
  for (int h = 0; h < kT / 128; ++h)
#pragma unroll
    for (int i = 0; i < G; ++i)
      w[h][i] = *reinterpret_cast<const uint4*>(n.weight + norm_group<kT, G>(h, i) * 8);
}

// This thread's groups of rows [0, M) of a [M, K] matrix (row stride ld), all loads in flight.
template <int kT, int G, int ROWS>
__device__ __forceinline__ void norm_load_groups(const __nv_bfloat16* p, int64_t ld, int M,
                                                 uint4 (&v)[ROWS][kT / 128][G]) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int hh = 0; hh < kT / 128; ++hh)
#pragma unroll
      for (int i = 0; i < G; ++i)
        if (r < M) v[r][hh][i] = *reinterpret_cast<const uint4*>(p + r * ld + norm_group<kT, G>(hh, i) * 8);
}

// Normalises rows [0, M) of n.residual (+ n.x) into `res` (shared memory): k-tile t of
// [t_begin, t_end) at res + (t - t_begin) * ROWS * BK * 2 bytes, row r and 16-byte chunk c at
// tile_offset<BK>(r, c), the layout load_tile gives the A stages. CTA (0, 0, 0) also writes h to
// n.residual_out. Every load is issued before any is used (one L2 round trip), and each thread
// normalises the groups it read. The caller's next __syncthreads publishes the rows. K = 8 kT G,
// a multiple of BK (no tail to zero-fill).
template <int kT, int G, int ROWS, int BK>
__device__ __forceinline__ void norm_rows_to_smem(const NormInput& n, const uint4 (&w)[kT / 128][G],
                                                  int M, int t_begin, int t_end, uint32_t res,
                                                  float* scratch) {
  using bf16 = __nv_bfloat16;
  constexpr int H = kT / 128;
  const bool writer = n.x != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0;
  uint4 h[ROWS][H][G];
  norm_load_groups<kT, G, ROWS>(n.residual, n.ldr, M, h);
  if (n.x != nullptr) {
    uint4 xv[ROWS][H][G];
    norm_load_groups<kT, G, ROWS>(n.x, n.ldx, M, xv);
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
      for (int hh = 0; hh < H; ++hh)
#pragma unroll
        for (int i = 0; i < G; ++i) {
          if (r >= M) continue;
          bf16* he = reinterpret_cast<bf16*>(&h[r][hh][i]);
#pragma unroll
          for (int j = 0; j < 8; ++j) he[j] = from_f32<bf16>(to_f32(he[j]) + norm_row::elem(xv[r][hh][i], j));
          if (writer)
            *reinterpret_cast<uint4*>(n.residual_out + r * n.ldo + norm_group<kT, G>(hh, i) * 8) = h[r][hh][i];
        }
  }
  // Sums of squares per virtual thread: its groups in ascending order, elements in order.
  float a[ROWS], b[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int hh = 0; hh < H; ++hh) {
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < G; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float v = r < M ? norm_row::elem(h[r][hh][i], j) : 0.0f;
          acc = fmaf(v, v, acc);
        }
      (hh == 0 ? a[r] : b[r]) = acc;
    }
    if constexpr (H == 1) b[r] = 0.0f;
  }
  norm_row_sums<kT, ROWS>(a, b, scratch);
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (r >= M) continue;
    const float inv = 1.0f / sqrtf(a[r] / float(8 * kT * G) + n.eps);
#pragma unroll
    for (int hh = 0; hh < H; ++hh)
#pragma unroll
      for (int i = 0; i < G; ++i) {
        const int g = norm_group<kT, G>(hh, i), t = g * 8 / BK;
        if (t < t_begin || t >= t_end) continue;
        uint4 o;
        bf16* oe = reinterpret_cast<bf16*>(&o);
#pragma unroll
        for (int j = 0; j < 8; ++j)
          oe[j] = from_f32<bf16>(norm_row::elem(w[hh][i], j) * (norm_row::elem(h[r][hh][i], j) * inv));
        const uint32_t dst = res + uint32_t((t - t_begin) * ROWS * BK * 2) + tile_offset<BK>(r, (g * 8 % BK) / 8);
        st_shared_u4(dst, o);
      }
  }
}

}  // namespace bitexact::ops::cuda::linear_detail
