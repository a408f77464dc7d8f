// The grouped expert GEMM of ops::cuda::moe_linear: y[r,:] = x[r / x_div,:] * w[e(r)]^T for the
// (token, slot) rows r grouped by expert. A CTA takes one tile of up to BM rows of ONE expert
// (from the tile map moe_route wrote) and BN columns, and runs linear_bf16_kernel's arithmetic:
// mma.sync.m16n8k16 in increasing k inside K chunks of kc = linear_plan(N, K).kc, chunks folded
// left to right, one bf16 rounding. So each element has the bits ops::linear gives that row
// alone with that expert's matrix, however many rows the expert got and whichever tile (or BM)
// they landed in.
// kSwiglu (the down projection at small batch): x is the gate_up output and the operand row is
// swiglu(x[:, :K], x[:, K:]), computed once into shared memory for all of K, with the very
// expression of ops::silu_mul (swiglu.cuh) and the same bf16 rounding, so the bits are those of
// silu_mul then moe_linear without the intermediate tensor or its launch.
#pragma once

#include "ops/cuda/linear_kernel.cuh"
#include "ops/cuda/swiglu.cuh"

namespace bitexact::ops::cuda::moe_detail {

using linear_detail::cp_async16;
using linear_detail::cp_async_commit;
using linear_detail::cp_async_wait;
using linear_detail::load_tile;
using linear_detail::mma_stage;
using linear_detail::smem_u32;
using linear_detail::st_shared_u4;
using linear_detail::tile_offset;

struct MoeGemmParams {
  const __nv_bfloat16* x;  // [rows of x, K], row stride ldx
  const __nv_bfloat16* w;  // [E, N, K] contiguous
  __nv_bfloat16* y;        // [M*k, N], row stride ldy
  const int32_t* offsets;  // [E + 1]: expert e owns grouped entries [offsets[e], offsets[e+1])
  const int32_t* rows;     // [M*k]: grouped rows (r = m * k + s)
  const int32_t* tiles;    // [1 + 2T]: tile count, then (expert, first grouped entry) per tile
  int64_t ldx, ldy;
  int x_div;  // x row of r: r / x_div (k: one x row per token; 1: one per slot)
  int N, K;
  int kc;  // K chunk of linear_plan(N, K): the reduction order
  // Non-invariant mode only: experts with at most this many rows use chunks of kc / 2, so a
  // row's bits depend on how many tokens chose its expert (0: never).
  int small_group;
  // The routing was written two or more launches back (pdl.cuh): the tile map is read and the
  // first weight stages are fetched before pdl_wait, as the dense GEMM does.
  bool routing_settled;
};

// Dynamic shared memory: STAGES weight stages, and either STAGES operand stages or (kSwiglu)
// the whole operand tile, ceil(K / BK) stages of BM rows.
template <int BM, int BN, int BK, int STAGES, bool kSwiglu = false>
constexpr int moe_smem_bytes(int K = 0) {
  const int a_stages = kSwiglu ? (K + BK - 1) / BK : STAGES;
  return STAGES * BN * BK * 2 + a_stages * BM * BK * 2;
}

// Grid (T_max, ceil(N / BN)); CTAs past the tile count exit at once, so the grid is sized from
// an upper bound known on the host (no sync on the routing result).
template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool kSwiglu = false>
__global__ void __launch_bounds__(WM* WN * 32) moe_gemm_kernel(const MoeGemmParams p) {
  constexpr int kThreads = WM * WN * 32;
  constexpr int TM = BM / WM, TN = BN / WN;
  constexpr int MI = TM / 16, NI = TN / 8;
  static_assert(TM % 16 == 0 && TN % 16 == 0, "warp tile must be a multiple of 16x16");
  constexpr int kStageA = BM * BK * 2, kStageB = BN * BK * 2;
  constexpr int kRowChunks = BK / 8, kChunksA = BM * kRowChunks;
  static_assert(kChunksA % kThreads == 0, "uneven A tile load");

  // PDL (pdl.cuh): the tile map comes from the routing kernel. When that is the previous kernel,
  // nothing (not even the expert's weights) can be fetched before the wait; when it ran earlier
  // (p.routing_settled), the map and the first weight stages are read before it.
  if (!p.routing_settled) {
    pdl_wait();
    pdl_launch_dependents();
  }
  const int tile = blockIdx.x;
  if (tile >= p.tiles[0]) {
    if (p.routing_settled) pdl_wait();  // this CTA may not exit before its predecessor ends
    return;
  }
  const int e = p.tiles[1 + 2 * tile], first = p.tiles[2 + 2 * tile];
  const int group_end = p.offsets[e + 1];
  const int n_rows = min(BM, group_end - first);
  const bool halve = p.small_group > 0 && group_end - p.offsets[e] <= p.small_group;
  const int kc = halve ? p.kc / 2 : p.kc;

  __shared__ int out_row[BM];  // y row of each tile row; -1 past the group
  for (int i = threadIdx.x; i < BM; i += kThreads) out_row[i] = i < n_rows ? p.rows[first + i] : -1;
  __syncthreads();

  extern __shared__ __align__(128) unsigned char smem[];
  const int total_tiles = (p.K + BK - 1) / BK;
  const int tiles_per_chunk = kc / BK;
  const uint32_t smem_b = smem_u32(smem);
  const uint32_t smem_a = smem_b + STAGES * kStageB;
  const __nv_bfloat16* w = p.w + int64_t(e) * p.N * p.K;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp / WN, wn = warp % WN;
  const int n0 = blockIdx.y * BN;

  // The x rows this thread copies (fixed across stages): gathered through out_row.
  const __nv_bfloat16* a_src[kChunksA / kThreads];
#pragma unroll
  for (int it = 0; it < kChunksA / kThreads; ++it) {
    const int r = (it * kThreads + threadIdx.x) / kRowChunks;
    a_src[it] = out_row[r] >= 0 ? p.x + int64_t(out_row[r] / p.x_div) * p.ldx : nullptr;
  }

  auto load_w = [&](int stage, int t) {
    load_tile<BN, BK, kThreads>(smem_b + stage * kStageB, w, p.K, n0, p.N, t * BK, p.K);
  };
  auto load_x = [&](int stage, int t) {
    if constexpr (!kSwiglu) {
      const int k0 = t * BK;
#pragma unroll
      for (int it = 0; it < kChunksA / kThreads; ++it) {
        const int i = it * kThreads + threadIdx.x, r = i / kRowChunks, c = i % kRowChunks;
        const int gk = k0 + c * 8;
        const bool ok = a_src[it] != nullptr && gk < p.K;  // K % 8 == 0
        cp_async16(smem_a + stage * kStageA + tile_offset<BK>(r, c), ok ? a_src[it] + gk : p.x,
                   ok ? 16 : 0);
      }
    }
  };

  // Prologue: weight stages (before the wait when the routing is settled), then the operand.
  // The weight copies join the first commit group, which the first wait covers anyway.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s)
    if (s < total_tiles) load_w(s, s);
  if (p.routing_settled) {
    pdl_wait();
    pdl_launch_dependents();
  }
  if constexpr (kSwiglu) {
    // The whole operand tile: row r, 8 k values per item, zeros past the rows and K, stored in
    // the swizzled layout the cp.async path would give (stage t at smem_a + t * kStageA).
    const int items = BM * total_tiles * kRowChunks;
    for (int i = threadIdx.x; i < items; i += kThreads) {
      const int c = i % kRowChunks, t = (i / kRowChunks) % total_tiles, r = i / (kRowChunks * total_tiles);
      const int gk = t * BK + c * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (out_row[r] >= 0 && gk < p.K) {
        const __nv_bfloat16* g = p.x + int64_t(out_row[r] / p.x_div) * p.ldx + gk;
        const uint4 gv = *reinterpret_cast<const uint4*>(g);
        const uint4 uv = *reinterpret_cast<const uint4*>(g + p.K);
        const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&gv);
        const __nv_bfloat162* u2 = reinterpret_cast<const __nv_bfloat162*>(&uv);
        __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 gf = __bfloat1622float2(g2[j]), uf = __bfloat1622float2(u2[j]);
          o2[j] = __floats2bfloat162_rn(swiglu(gf.x, uf.x), swiglu(gf.y, uf.y));
        }
      }
      st_shared_u4(smem_a + t * kStageA + tile_offset<BK>(r, c), v);
    }
    cp_async_commit();
#pragma unroll
    for (int s = 1; s < STAGES - 1; ++s) cp_async_commit();
  } else {
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < total_tiles) load_x(s, s);
      cp_async_commit();
    }
  }

  float acc[MI][NI][4], out[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = out[i][j][q] = 0.f;

  for (int it = 0; it < total_tiles; ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // (kSwiglu: also publishes the operand tile before the first mma)
    if (it + STAGES - 1 < total_tiles) {
      load_w((it + STAGES - 1) % STAGES, it + STAGES - 1);
      load_x((it + STAGES - 1) % STAGES, it + STAGES - 1);
    }
    cp_async_commit();

    const int stage = it % STAGES;
    const uint32_t a_base = smem_a + (kSwiglu ? it : stage) * kStageA, b_base = smem_b + stage * kStageB;
    mma_stage<BK, MI, NI, TM, TN>(a_base, b_base, wm, wn, lane, acc);
    // Chunk end: out = p_0, then out = out + p_c, exactly as linear_bf16_kernel folds.
    if ((it + 1) % tiles_per_chunk == 0 || it + 1 == total_tiles) {
      const bool first_chunk = it < tiles_per_chunk;
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            out[i][j][q] = first_chunk ? acc[i][j][q] : __fadd_rn(out[i][j][q], acc[i][j][q]);
            acc[i][j][q] = 0.f;
          }
    }
  }
  cp_async_wait<0>();

  // Fragment element q of mma tile (i, j) sits at tile row (lane >> 2) + (q >> 1) * 8, columns
  // c0, c0 + 1.
  const int r_base = wm * TM + (lane >> 2), c_base = n0 + wn * TN + (lane & 3) * 2;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = r_base + i * 16 + h * 8, c = c_base + j * 8;
        const int yr = out_row[r];
        if (yr >= 0 && c < p.N)
          *reinterpret_cast<__nv_bfloat162*>(p.y + int64_t(yr) * p.ldy + c) =
              __floats2bfloat162_rn(out[i][j][2 * h], out[i][j][2 * h + 1]);
      }
}

}  // namespace bitexact::ops::cuda::moe_detail
