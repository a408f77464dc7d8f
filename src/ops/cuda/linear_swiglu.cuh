// The SwiGLU prologue of the decode GEMM (linear_bf16_kernel with RES_ROWS > 0 and no norm,
// behind ops::swiglu_linear): every CTA makes the M <= RES_ROWS rows of its x itself, x =
// silu(gate) * up from the [M, 2K] gate_up rows (p.x, row stride p.ldx), for its K range, into
// shared memory in the layout of the pipeline's A stages. So the silu_mul kernel before a decode
// down projection leaves the step's critical path. Each element is swiglu.cuh's expression
// rounded to bf16 once, as silu_mul_kernel stores it: the same bits.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/linear_smem.cuh"
#include "ops/cuda/norm_row.cuh"
#include "ops/cuda/swiglu.cuh"

namespace bitexact::ops::cuda::linear_detail {

// Rows [0, M), k in [t_begin BK, t_end BK) (K % BK == 0) into `res`: k-tile t at
// res + (t - t_begin) ROWS BK 2 bytes, row r, 16-byte chunk c at tile_offset<BK>(r, c). Loads of
// kBatch groups per thread are issued before any is used. The caller's next __syncthreads
// publishes the rows.
template <int ROWS, int BK>
__device__ __forceinline__ void swiglu_rows_to_smem(const __nv_bfloat16* gu, int64_t ld, int K, int M,
                                                    int t_begin, int t_end, uint32_t res) {
  using bf16 = __nv_bfloat16;
  constexpr int kBatch = 4, kRowChunks = BK / 8;
  const int per_row = (t_end - t_begin) * kRowChunks, total = M * per_row, k0 = t_begin * BK;
  for (int base = 0; base < total; base += 128 * kBatch) {
    uint4 g[kBatch], u[kBatch];
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      const int i = base + q * 128 + threadIdx.x;
      if (i >= total) break;
      const bf16* row = gu + (i / per_row) * ld + k0 + (i % per_row) * 8;
      g[q] = *reinterpret_cast<const uint4*>(row);
      u[q] = *reinterpret_cast<const uint4*>(row + K);
    }
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      const int i = base + q * 128 + threadIdx.x;
      if (i >= total) break;
      const int r = i / per_row, c = i % per_row;
      uint4 o;
      bf16* oe = reinterpret_cast<bf16*>(&o);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        oe[j] = from_f32<bf16>(swiglu(norm_row::elem(g[q], j), norm_row::elem(u[q], j)));
      const uint32_t dst = res + uint32_t((c / kRowChunks) * ROWS * BK * 2) + tile_offset<BK>(r, c % kRowChunks);
      st_shared_u4(dst, o);
    }
  }
}

}  // namespace bitexact::ops::cuda::linear_detail
