// The batch-invariant bf16 GEMM kernel y[M,N] = x[M,K] * w[N,K]^T: mma.sync.m16n8k16 with f32
// accumulators, cp.async multi-stage pipeline, ldmatrix from XOR-swizzled shared memory.
// One template serves every code path (small/medium/large tiles, split or fused K chunks).
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "ops/cuda/cluster.cuh"
#include "ops/cuda/last_arrival.cuh"
#include "ops/cuda/linear_norm.cuh"
#include "ops/cuda/linear_smem.cuh"
#include "ops/cuda/linear_swiglu.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda::linear_detail {

// THE reduction order (the invariance contract for GEMM, ARCHITECTURE.md rule 3):
//  * K is cut into chunks of `kc` elements (kc a multiple of kChunkAlign, chosen from (N, K) only by
//    linear_plan in linear.cu); chunk c covers [c*kc, min(K, (c+1)*kc)).
//  * Inside a chunk, each output element has one f32 accumulator that starts at +0 and takes one
//    mma.m16n8k16 per 16 K values, in increasing k (K zero-padded; zero steps add exact zeros).
//  * Chunk partials p_0..p_{S-1} merge left to right: out = p_0; out = out + p_1; ...
//  * out is rounded to bf16 once (round to nearest even).
// The M and N tiling only decides which rows/columns share an mma, never the order of any sum,
// so every tile configuration, split or fused, computes the same bits for every element.
constexpr int kChunkAlign = 128;  // kc is a multiple of this, hence of every stage depth BK

struct LinearParams {
  const __nv_bfloat16* x;  // [M, K], row stride ldx
  const __nv_bfloat16* w;  // [N, K], contiguous
  __nv_bfloat16* y;        // [M, N], row stride ldy
  float* partial;          // split mode: [S, M, N] f32 chunk partials
  int* counters;           // split mode: [m_tiles * n_tiles] arrival counters, zero between calls
  int64_t ldx, ldy;
  int M, N, K;
  int kc;       // chunk length, a multiple of 128 (so of every BK)
  int S;        // number of chunks = ceil(K / kc)
  int group_m;  // fused mode: M-tiles per raster group (speed only)
  NormInput norm;  // RES_ROWS, NORM_THREADS > 0: x = rms_norm(norm.residual (+ norm.x)), per CTA
};

// 16-byte async copy; src_bytes = 0 writes zeros (K tail, rows past M or N).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1,
                                            uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// d = a * b + d for one 16x8 tile over 16 k. Each d element depends on its own row of a and
// column of b only, so which other rows share the instruction cannot change its bits.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Loads rows [row0, row0+ROWS) x k [k0, k0+BK) of a [rows_total, K] matrix (row stride ld) into
// smem (swizzled). Out-of-range rows and k are zero-filled.
template <int ROWS, int BK, int THREADS>
__device__ __forceinline__ void load_tile(uint32_t smem, const __nv_bfloat16* g, int64_t ld,
                                          int row0, int rows_total, int k0, int K) {
  constexpr int kRowChunks = BK / 8, kChunks = ROWS * kRowChunks;
  static_assert(kChunks % THREADS == 0 || kChunks < THREADS, "uneven tile load");
#pragma unroll
  for (int it = 0; it < (kChunks + THREADS - 1) / THREADS; ++it) {
    int i = it * THREADS + threadIdx.x;
    if (kChunks % THREADS != 0 && i >= kChunks) break;
    int r = i / kRowChunks, c = i % kRowChunks;
    int gr = row0 + r, gk = k0 + c * 8;
    bool ok = gr < rows_total && gk < K;  // K % 8 == 0: a 16-byte chunk is all in or all out
    const __nv_bfloat16* src = ok ? g + int64_t(gr) * ld + gk : g;
    cp_async16(smem + tile_offset<BK>(r, c), src, ok ? 16 : 0);
  }
}

// One pipeline stage of the K loop: the BK/16 k16 steps of mma.sync over a warp's MI x NI
// tiles in increasing k, fragments double-buffered through ldmatrix. The dense GEMM and the MoE
// expert GEMM both run exactly this, which is what makes their rows bit-equal.
// A_ROWS > 0: the A block holds A_ROWS rows (a power of two) and tile row r reads row
// r % A_ROWS; rows past M only feed output rows that are never stored, and a row's products
// depend on that row alone.
template <int BK, int MI, int NI, int TM, int TN, int A_ROWS = 0>
__device__ __forceinline__ void mma_stage(uint32_t a_base, uint32_t b_base, int wm, int wn, int lane,
                                          float (&acc)[MI][NI][4]) {
  constexpr int KS = BK / 16;
  uint32_t af[2][MI][4], bf[2][NI][2];
  auto load_frags = [&](int buf, int kk) {
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      int r = wm * TM + i * 16 + (lane & 15);
      if constexpr (A_ROWS > 0) r &= A_ROWS - 1;
      ldmatrix_x4(a_base + tile_offset<BK>(r, kk * 2 + (lane >> 4)), af[buf][i][0], af[buf][i][1],
                  af[buf][i][2], af[buf][i][3]);
    }
#pragma unroll
    for (int j = 0; j < NI; j += 2) {
      int r = wn * TN + j * 8 + (lane & 7) + ((lane >> 4) << 3);
      ldmatrix_x4(b_base + tile_offset<BK>(r, kk * 2 + ((lane >> 3) & 1)), bf[buf][j][0], bf[buf][j][1],
                  bf[buf][j + 1][0], bf[buf][j + 1][1]);
    }
  };
  load_frags(0, 0);
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {  // k16 steps in increasing k: the fixed order
    if (kk + 1 < KS) load_frags((kk + 1) & 1, kk + 1);  // overlaps the mma below
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j)
        mma_bf16(acc[i][j], af[kk & 1][i], bf[kk & 1][j][0], bf[kk & 1][j][1]);
  }
}

// CTA tile BM x BN, k-stage BK, WM x WN warps (warp tile (BM/WM) x (BN/WN)), STAGES-deep pipeline.
// BK is only the copy granularity: chunk boundaries (multiples of kc, itself a multiple of every
// BK used) and the k16 order are the same for every BK; a K tail padded to BK adds exact zeros.
// SPLIT: grid (n_tiles, S, m_tiles), one K chunk per CTA; the CTA writes its f32 partial and the
//        last CTA of an output tile to arrive (integer counter) folds all S partials in order.
// !SPLIT: grid (m_tiles * n_tiles), tiles visited in groups of p.group_m M-tiles so that CTAs
//        running together share weight tiles in L2; the CTA walks all chunks and folds them.
// CLUSTER (with SPLIT, M <= 16, S <= 4): the S CTAs of an output tile form a cluster (1, S, 1); the
//        partials meet in chunk 0's shared memory (DSMEM) and chunk 0 folds them in chunk order:
//        the same arithmetic as the last-CTA fold, without the round trip through L2, the fence
//        and the counter (the fold's latency is most of a decode GEMM's tail).
// RES_ROWS > 0 (BM 16, M <= RES_ROWS, K % BK == 0): x is not loaded stage by stage but made by
//        the CTA before its K loop, resident in shared memory for the CTA's K range in the A
//        stages' layout, with the bits of the op it replaces:
//        NORM_THREADS > 0 (K = 8 NORM_THREADS NORM_GROUPS; ops::norm_linear): rms_norm of p.norm's
//          rows over the whole K (linear_norm.cuh, norm.cu's bits);
//        NORM_THREADS == 0 (ops::swiglu_linear): silu(gate) * up of the [M, 2K] rows at p.x
//          (linear_swiglu.cuh, silu_mul's bits).
// The grid is a pure function of (M, N, K) and the config, never of the SM count.
template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool SPLIT, bool CLUSTER = false,
          int RES_ROWS = 0, int NORM_THREADS = 0, int NORM_GROUPS = 0>
__global__ void __launch_bounds__(WM* WN * 32)
    linear_bf16_kernel(const LinearParams p) {
  constexpr int kThreads = WM * WN * 32;
  constexpr int TM = BM / WM, TN = BN / WN;  // warp tile
  constexpr int MI = TM / 16, NI = TN / 8;   // mma tiles per warp
  static_assert(TM % 16 == 0 && TN % 16 == 0, "warp tile must be a multiple of 16x16");
  constexpr int kStageA = BM * BK * 2, kStageB = BN * BK * 2;

  static_assert(RES_ROWS == 0 || (BM == 16 && kThreads == 128), "the resident prologues' shape");
  constexpr int kResTile = RES_ROWS * BK * 2;  // bytes of one resident k-tile of x

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t smem_a = smem_u32(smem);
  // A: the STAGES-deep ring, or the resident rows (normalised or SwiGLU) of the CTA's k-tiles.
  const int a_bytes = RES_ROWS > 0 ? kResTile * (SPLIT ? p.kc / BK : (p.K + BK - 1) / BK)
                                    : STAGES * kStageA;
  const uint32_t smem_b = smem_a + a_bytes;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp / WN, wn = warp % WN;
  int m_tile, n_tile;
  if constexpr (SPLIT) {
    n_tile = blockIdx.x;
    m_tile = blockIdx.z;
  } else {
    const int n_tiles = (p.N + BN - 1) / BN, m_tiles = (p.M + BM - 1) / BM;
    const int per_group = p.group_m * n_tiles, group = blockIdx.x / per_group;
    const int first_m = group * p.group_m, group_size = min(m_tiles - first_m, p.group_m);
    const int local = blockIdx.x - group * per_group;
    m_tile = first_m + local % group_size;
    n_tile = local / group_size;
  }
  const int n0 = n_tile * BN, m0 = m_tile * BM;

  const int total_tiles = (p.K + BK - 1) / BK;
  const int tiles_per_chunk = p.kc / BK;
  int t_begin = 0, t_end = total_tiles;
  if constexpr (SPLIT) {
    t_begin = blockIdx.y * tiles_per_chunk;
    t_end = min(total_tiles, t_begin + tiles_per_chunk);
  }
  const int n_local = t_end - t_begin;

  auto load_x = [&](int stage, int t) {
    load_tile<BM, BK, kThreads>(smem_a + stage * kStageA, p.x, p.ldx, m0, p.M, t * BK, p.K);
  };
  auto load_w = [&](int stage, int t) {
    load_tile<BN, BK, kThreads>(smem_b + stage * kStageB, p.w, p.K, n0, p.N, t * BK, p.K);
  };
  auto load_stage = [&](int stage, int t) {
    load_x(stage, t);
    load_w(stage, t);
  };

  float acc[MI][NI][4];
  // Fused mode: the fold of finished chunks lives in shared memory, one slot per (thread,
  // element), so the registers hold only the running chunk (a second register set would spill).
  float* out = reinterpret_cast<float*>(smem + a_bytes + STAGES * kStageB);
  auto out_at = [&](int i, int j, int e) -> float& {
    return out[((i * NI + j) * 4 + e) * kThreads + threadIdx.x];  // consecutive threads: no conflicts
  };
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  // The first stages' weights stream in before pdl_wait (no kernel of a forward pass writes
  // weights), overlapping the previous kernel's tail. They join cp.async group 0, so the waits
  // below still mean "stage s has landed" for every s.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s)
    if (s < n_local) load_w(s, t_begin + s);
  if constexpr (RES_ROWS > 0 && NORM_THREADS == 0) {
    pdl_wait();
    pdl_launch_dependents();
    swiglu_rows_to_smem<RES_ROWS, BK>(p.x, p.ldx, p.K, p.M, t_begin, t_end, smem_a);
  } else if constexpr (RES_ROWS > 0) {
    uint4 norm_w[NORM_THREADS / 128][NORM_GROUPS];  // weights: before the wait
    norm_load_weights<NORM_THREADS, NORM_GROUPS>(p.norm, norm_w);
    pdl_wait();
    pdl_launch_dependents();
    __shared__ float norm_scratch[RES_ROWS * 8];
    norm_rows_to_smem<NORM_THREADS, NORM_GROUPS, RES_ROWS, BK>(p.norm, norm_w, p.M, t_begin, t_end,
                                                                smem_a, norm_scratch);
  } else {
    pdl_wait();
    pdl_launch_dependents();
  }
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (RES_ROWS == 0 && s < n_local) load_x(s, t_begin + s);
    cp_async_commit();
  }

  for (int it = 0; it < n_local; ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile `it` landed for all threads; stage (it-1) is free to overwrite
    if (it + STAGES - 1 < n_local) {
      const int ahead = (it + STAGES - 1) % STAGES, t = t_begin + it + STAGES - 1;
      if constexpr (RES_ROWS > 0) load_w(ahead, t);
      else load_stage(ahead, t);
    }
    cp_async_commit();

    const int stage = it % STAGES;
    const uint32_t b_base = smem_b + stage * kStageB;
    if constexpr (RES_ROWS > 0)
      mma_stage<BK, MI, NI, TM, TN, RES_ROWS>(smem_a + it * kResTile, b_base, wm, wn, lane, acc);
    else
      mma_stage<BK, MI, NI, TM, TN>(smem_a + stage * kStageA, b_base, wm, wn, lane, acc);

    if constexpr (!SPLIT) {
      const int t = t_begin + it;
      const bool chunk_end = (t + 1) % tiles_per_chunk == 0 || t + 1 == total_tiles;
      if (chunk_end) {
        const bool first = t < tiles_per_chunk;  // chunk 0: out = p_0, later: out = out + p_c
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              out_at(i, j, e) = first ? acc[i][j][e] : __fadd_rn(out_at(i, j, e), acc[i][j][e]);
              acc[i][j][e] = 0.f;
            }
      }
    }
  }
  cp_async_wait<0>();

  // Fragment element e of mma tile (i, j) sits at row r0 + (e >> 1) * 8, columns c0, c0 + 1.
  const int r_base = m0 + wm * TM + (lane >> 2), c_base = n0 + wn * TN + (lane & 3) * 2;
  // y = bf16 of the folded fragments, value(i, j, e) being element e of mma tile (i, j).
  auto store_y = [&](auto value) {
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          int r = r_base + i * 16 + h * 8, c = c_base + j * 8;
          if (r < p.M && c < p.N)
            *reinterpret_cast<__nv_bfloat162*>(p.y + int64_t(r) * p.ldy + c) =
                __floats2bfloat162_rn(value(i, j, 2 * h), value(i, j, 2 * h + 1));
        }
  };
  if constexpr (!SPLIT) {
    store_y([&](int i, int j, int e) { return out_at(i, j, e); });
  } else if constexpr (CLUSTER) {
    // Chunk c = blockIdx.y = the CTA's rank in the cluster. Each thread's fragment is parked at
    // park[slot][element][thread] (consecutive threads: no bank conflicts), slot c - 1 of chunk
    // 0's shared memory, which reuses its pipeline stages, so they must be drained first.
    constexpr int kElems = MI * NI * 4;
    const int chunk = blockIdx.y;
    float* park = reinterpret_cast<float*>(smem);
    cluster_arrive_release();  // 1: every CTA is past its last mma: chunk 0's stages are free
    cluster_wait();
    if (chunk > 0) {
      const uint32_t slot = map_to_rank0(park + (chunk - 1) * kElems * kThreads + threadIdx.x);
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            st_cluster_f(slot + uint32_t(((i * NI + j) * 4 + e) * kThreads * 4), acc[i][j][e]);
    }
    cluster_arrive_release();  // 2: every partial is parked (release / acquire)
    cluster_wait();
    if (chunk > 0) return;
    // out = p_0, then out + p_1, ..., + p_{S-1}: the last-CTA fold's order.
    for (int c = 1; c < p.S; ++c) {
      const float* src = park + (c - 1) * kElems * kThreads + threadIdx.x;
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            acc[i][j][e] = __fadd_rn(acc[i][j][e], src[((i * NI + j) * 4 + e) * kThreads]);
    }
    store_y([&](int i, int j, int e) { return acc[i][j][e]; });
  } else {
    // 1. Publish this chunk's partial.
    const int64_t mn = int64_t(p.M) * p.N;
    float* part = p.partial + blockIdx.y * mn;
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          int r = r_base + i * 16 + h * 8, c = c_base + j * 8;
          if (r < p.M && c < p.N)
            __stcg(reinterpret_cast<float2*>(part + int64_t(r) * p.N + c),
                   make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]));
        }
    // 2. Count arrivals (integer atomic: no float atomics anywhere). Whichever CTA arrives last
    //    does the fold, but the fold reads partials in chunk order 0..S-1, so the arrival order
    //    never reaches the arithmetic.
    if (!last_to_arrive(p.counters + blockIdx.z * gridDim.x + blockIdx.x, p.S)) return;
    // 3. Fold: each thread takes 4 adjacent outputs and issues its partial loads 8 at a time
    //    (independent, so their latencies overlap), then adds them strictly in chunk order.
    const int rows = min(BM, p.M - m0), quads = min(BN, p.N - n0) / 4;
    for (int g = threadIdx.x; g < rows * quads; g += kThreads) {
      const int r = m0 + g / quads, c = n0 + (g % quads) * 4;
      const float* src = p.partial + int64_t(r) * p.N + c;
      float4 o = __ldcg(reinterpret_cast<const float4*>(src));
      for (int s0 = 1; s0 < p.S; s0 += 8) {
        float4 v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u)
          if (s0 + u < p.S) v[u] = __ldcg(reinterpret_cast<const float4*>(src + (s0 + u) * mn));
#pragma unroll
        for (int u = 0; u < 8; ++u)
          if (s0 + u < p.S) {
            o.x = __fadd_rn(o.x, v[u].x);
            o.y = __fadd_rn(o.y, v[u].y);
            o.z = __fadd_rn(o.z, v[u].z);
            o.w = __fadd_rn(o.w, v[u].w);
          }
      }
      __nv_bfloat162 lo = __floats2bfloat162_rn(o.x, o.y), hi = __floats2bfloat162_rn(o.z, o.w);
      uint2 packed = make_uint2(*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi));
      *reinterpret_cast<uint2*>(p.y + int64_t(r) * p.ldy + c) = packed;
    }
  }
}

// Pipeline stages, plus the fused mode's f32 fold of BM x BN.
template <int BM, int BN, int BK, int STAGES, bool SPLIT>
constexpr int linear_smem_bytes() {
  return STAGES * (BM + BN) * BK * 2 + (SPLIT ? 0 : BM * BN * 4);
}

// The same for RES_ROWS > 0: the resident rows of the CTA's K range replace the x stages.
template <int BM, int BN, int BK, int STAGES, bool SPLIT>
int linear_resident_smem_bytes(int norm_rows, int K, int kc) {
  return norm_rows * (SPLIT ? kc : K) * 2 + STAGES * BN * BK * 2 + (SPLIT ? 0 : BM * BN * 4);
}

}  // namespace bitexact::ops::cuda::linear_detail
