// The Hopper path of the batch-invariant GEMM y[M,N] = x[M,K] * w[N,K]^T: warp-specialised,
// one producer thread streams 64-deep K stages of x and w with the bulk tensor copy engine (TMA,
// 128-byte swizzle) through an mbarrier ring; BM/64 consumer warpgroups each run wgmma.m64nBNk16
// on a 64-row slice. Persistent CTAs, or CTA pairs (clusters) sharing the weight tile by
// multicast, or split-K work items (one run of K chunks of one tile each, chunk partials through
// a workspace, folded in chunk order by the last item of the tile to finish). It keeps the
// reduction order of linear_kernel.cuh exactly (see there): per element, k16 steps in
// increasing k from +0 inside a chunk, chunks folded left to right.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "ops/cuda/gemm/wgmma_ops.cuh"
#include "ops/cuda/linear_kernel.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda::linear_detail {

constexpr int kWgmmaBK = 64;  // one stage = 64 K values = one 128-byte swizzle row; kc % 64 == 0
// Persistent grid: at most this many CTAs (one per SM of an H100 SXM at 1 CTA/SM). A constant of
// the build, never read from the device: fewer SMs only run the CTAs in more waves.
constexpr int kWgmmaCtas = 132;

template <int BM, int BN, int STAGES, int EPI_N = 0>
constexpr int wgmma_smem_bytes() {
  // Stages of x and w tiles, the bf16 output staging of the TMA-store epilogue (BM x EPI_N),
  // 2 * STAGES mbarriers, and slack to align the base to 1024 bytes.
  return STAGES * (BM + BN) * kWgmmaBK * 2 + BM * EPI_N * 2 + 16 * STAGES + 1024;
}

template <int BN>
__device__ __forceinline__ void wgmma_tile(float (&d)[BN / 2], uint64_t da, uint64_t db) {
  if constexpr (BN == 64) wgmma_n64(d, da, db);
  else if constexpr (BN == 128) wgmma_n128(d, da, db);
  else if constexpr (BN == 192) wgmma_n192(d, da, db);
  else wgmma_n256(d, da, db);
}

// Rounds one thread's 64 x BN accumulator fragment to bf16 and stores the elements inside M x N.
// Element i = 4j + 2h + e sits at row r_base + 8h, column c_base + 8j + e (wgmma_ops.cuh).
template <int BN>
__device__ __forceinline__ void wgmma_store(const float (&v)[BN / 2], const LinearParams& p,
                                            int r_base, int c_base) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r_base + 8 * h, col = c_base + 8 * j;
      if (r < p.M && col < p.N)  // N % 8 == 0: col < N implies col + 1 < N
        *reinterpret_cast<__nv_bfloat162*>(p.y + int64_t(r) * p.ldy + col) =
            __floats2bfloat162_rn(v[4 * j + 2 * h], v[4 * j + 2 * h + 1]);
    }
}

// The v6 epilogue: one consumer warpgroup's 64 x BN slice, rounded to bf16 exactly as
// wgmma_store does, written to its shared-memory staging buffer `buf` (64 x EPI_N, boxes of 64
// columns, 128-byte swizzle: 16-byte chunk q of row r at q ^ (r % 8), so the 8 rows of one
// st.shared hit 8 different chunks) and stored by the bulk tensor engine (tmap_y: boxes of
// 64 x 64, elements past M or N are not written), BN / EPI_N passes. The warpgroup goes back to
// its next tile's wgmmas while the stores drain; before it rewrites the buffer, its first thread
// waits until the previous stores have read it. Only the store path differs from wgmma_store:
// the bits are the same.
template <int BN, int EPI_N>
__device__ __forceinline__ void wgmma_store_tma(const float (&v)[BN / 2], const void* tmap_y,
                                                uint32_t buf, int row0, int n0, int M, int N,
                                                int bar_id) {
  static_assert(BN % EPI_N == 0 && EPI_N % 64 == 0, "staging passes of whole 64-column boxes");
  const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
  const bool leader = t == 0;
  // This thread's element (row warp * 16 + lane / 4 (+ 8 h), chunk q, word lane % 4) sits at
  // (row_addr ^ (q << 4)) + 1024 h: rows are 128 B, so the swizzle is one XOR on bits 4-6 (buf
  // is 1024-aligned, so no other term reaches them); few registers next to 2 x 96 f32.
  const uint32_t row_addr = buf + (warp * 16 + lane / 4) * 128 + ((lane / 4) << 4) + 4 * (lane % 4);
#pragma unroll
  for (int pass = 0; pass < BN / EPI_N; ++pass) {
    if (leader) bulk_wait_read<0>();  // the previous stores from this buffer have read it
    named_bar_sync(bar_id, 128);
#pragma unroll
    for (int jj = 0; jj < EPI_N / 8; ++jj)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int j = pass * (EPI_N / 8) + jj;
        const __nv_bfloat162 b = __floats2bfloat162_rn(v[4 * j + 2 * h], v[4 * j + 2 * h + 1]);
        const uint32_t addr = (row_addr ^ uint32_t((jj % 8) << 4)) + (jj / 8) * 8192 + 1024 * h;
        st_shared_u32(addr, *reinterpret_cast<const uint32_t*>(&b));
      }
    fence_proxy_async_smem();  // the writes above, before the bulk engine reads them
    named_bar_sync(bar_id, 128);
    if (leader && row0 < M) {
#pragma unroll
      for (int box = 0; box < EPI_N / 64; ++box) {
        const int col = n0 + pass * EPI_N + box * 64;
        if (col < N) tma_store_2d(tmap_y, buf + box * 8192, col, row0);
      }
      bulk_commit();
    }
  }
}

// Writes one thread's accumulators of chunk partial p_c to its workspace slot: slot (tile, c)
// holds BM x BN f32 in fragment order (float4 q of consumer thread ct at q * threads + ct), so
// each warp writes and later reads whole 512-byte runs. Only the fold below reads it back.
template <int BN, int THREADS>
__device__ __forceinline__ void wgmma_store_partial(const float (&v)[BN / 2], float* slot, int ct) {
  float4* dst = reinterpret_cast<float4*>(slot) + ct;
#pragma unroll
  for (int q = 0; q < BN / 8; ++q)
    __stcg(dst + q * THREADS, make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]));
}

// out = p_0; out = out + p_1; ...; out + p_{S-1} (__fadd_rn, chunk order) for one thread's
// elements, read from the S workspace slots of its tile (the split mode's fold). BN = 64: the
// loads of 4 slots (128 registers) are in flight together, so the fold costs ceil(S / 4) L2
// round trips rather than S (BN = 128: one slot at a time; more spilled). The adds still run
// strictly in chunk order.
template <int BN, int THREADS>
__device__ __forceinline__ void wgmma_fold_partials(float (&out)[BN / 2], const float* slots,
                                                    int S, int ct) {
  constexpr int kQ = BN / 8, kD = BN == 64 ? 4 : 1;  // float4 per slot per thread, slots per batch
  constexpr int kSlot4 = THREADS * (BN / 8);   // float4 per slot: BM x BN / 4
  const float4* src = reinterpret_cast<const float4*>(slots) + ct;
  for (int c0 = 0; c0 < S; c0 += kD) {
    float4 v[kD][kQ];
#pragma unroll
    for (int d = 0; d < kD; ++d)
      if (c0 + d < S)
#pragma unroll
        for (int q = 0; q < kQ; ++q) v[d][q] = __ldcg(src + int64_t(c0 + d) * kSlot4 + q * THREADS);
#pragma unroll
    for (int d = 0; d < kD; ++d)
      if (c0 + d < S)
#pragma unroll
        for (int q = 0; q < kQ; ++q) {
          if (c0 + d == 0) {  // out = p_0
            out[4 * q] = v[d][q].x;
            out[4 * q + 1] = v[d][q].y;
            out[4 * q + 2] = v[d][q].z;
            out[4 * q + 3] = v[d][q].w;
          } else {  // out = out + p_c
            out[4 * q] = __fadd_rn(out[4 * q], v[d][q].x);
            out[4 * q + 1] = __fadd_rn(out[4 * q + 1], v[d][q].y);
            out[4 * q + 2] = __fadd_rn(out[4 * q + 2], v[d][q].z);
            out[4 * q + 3] = __fadd_rn(out[4 * q + 3], v[d][q].w);
          }
        }
  }
}

__device__ __forceinline__ void consumer_bar_sync(int threads) {  // named barrier 1
  asm volatile("bar.sync 1, %0;\n" ::"r"(threads) : "memory");
}

// Origin of output tile `tile` in the grouped raster: groups of group_m M-tiles, M fastest inside
// a group, so that CTAs running at the same time share weight tiles in L2 (speed only).
template <int BM, int BN>
__device__ __forceinline__ void wgmma_tile_origin(const LinearParams& p, int tile, int& m0,
                                                  int& n0) {
  const int n_tiles = (p.N + BN - 1) / BN, m_tiles = (p.M + BM - 1) / BM;
  const int per_group = p.group_m * n_tiles, group = tile / per_group;
  const int first_m = group * p.group_m, group_size = min(m_tiles - first_m, p.group_m);
  const int local = tile - group * per_group;
  m0 = (first_m + local % group_size) * BM;
  n0 = (local / group_size) * BN;
}

// CTA tile BM x BN (BM = 64 * consumer warpgroups), STAGES-deep ring of 64-deep K stages.
// FOLD=false only when the plan has one chunk (S == 1): the accumulators are the result.
// Persistent: CTA b computes tiles b, b + gridDim.x, ... of the grouped raster; the grid size is
// min(tiles, kWgmmaCtas), a function of (M, N, K, config) only. Which CTA computes a tile, and
// when, never changes its arithmetic: each tile starts from zeroed accumulators.
// The producer runs up to STAGES stages ahead, across tile boundaries, so the next tile's loads
// overlap this tile's epilogue.
// tmap_x / tmap_w: [M, K] / [N, K] bf16, boxes of 64 (K) x BM / BN rows, 128-byte swizzle,
// zero fill out of bounds (rows past M or N, the K tail).
// CLUSTER = 2: CTA pairs (launched as thread-block clusters) take M-tiles 2u and 2u + 1 of one
// N column; each loads its own x tile and half of the shared w tile, multicast into both CTAs'
// shared memory, so each w byte leaves L2 once per pair. A stage is refilled only after the
// consumers of both CTAs released it (their empty barriers count arrivals from both). Such
// grids are not persistent: one cluster per tile pair (clusters need a free SM pair to start).
// BM = 128 kernels move registers from the producer warpgroup (40) to the consumers (232): the
// fold doubles the accumulator registers (2 x 96 for BN = 192).
// SPLIT (CLUSTER = 1, FOLD = false): work items (tile, g) for g < ceil(S / chunks_per_item),
// item unit = g * tiles + tile; item g computes chunks [g R, g R + R) of its tile (R =
// chunks_per_item, a speed choice: each chunk's partial p_c is written to its own slot, so R
// never reaches the arithmetic). The item that raises the tile's integer counter to the item
// count folds p_0..p_{S-1} from the slots in chunk order (as the mma.sync small_split path), so
// which item finishes last never matters. No float atomics, no waiting on other CTAs.
// EPI_N > 0 (v6; CLUSTER = 1, no SPLIT): the epilogue stages each warpgroup's bf16 slice in
// shared memory (64 x EPI_N per pass) and stores it with the bulk tensor engine (tmap_y: [M, N],
// boxes of 64 x 64, 128-byte swizzle), so the consumers return to the next tile's wgmmas while
// the stores drain instead of waiting on 64-128 global stores per thread. Same arithmetic.
template <int BM, int BN, int STAGES, bool FOLD, int CLUSTER, bool SPLIT = false, int EPI_N = 0>
__global__ void __launch_bounds__((BM / 64 + 1) * 128, 1)
    linear_wgmma_kernel(const LinearParams p, const __grid_constant__ CUtensorMap tmap_x,
                        const __grid_constant__ CUtensorMap tmap_w,
                        const __grid_constant__ CUtensorMap tmap_y, const int chunks_per_item) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kConsumers = BM / 64;
  constexpr int kStageA = BM * kWgmmaBK * 2, kStageB = BN * kWgmmaBK * 2;
  constexpr int kAcc = BN / 2;  // f32 accumulators per thread for a 64 x BN slice
  static_assert(BM % 64 == 0 && BN % 64 == 0 && BN <= 256, "unsupported tile");
  static_assert(kStageA % 1024 == 0 && kStageB % 1024 == 0, "stages must keep 1024-B alignment");
  constexpr bool kMoveRegs = BM == 128;
  static_assert(CLUSTER == 1 || CLUSTER == 2, "clusters of 1 or 2 CTAs");
  static_assert(kStageB % (1024 * CLUSTER) == 0, "multicast halves must keep 1024-B alignment");
  static_assert(!SPLIT || (CLUSTER == 1 && !FOLD), "split items fold through the workspace");
  static_assert(EPI_N == 0 || (CLUSTER == 1 && !SPLIT), "TMA-store epilogue: plain tiles only");
  constexpr int kEpiBytes = 64 * EPI_N * 2;  // staging per consumer warpgroup

  extern __shared__ unsigned char smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;  // swizzle atoms need 1024 B
  const uint32_t smem_a = base, smem_b = base + STAGES * kStageA;
  const uint32_t smem_epi = base + STAGES * (kStageA + kStageB);  // 1024-aligned
  const uint32_t full_bar = smem_epi + kConsumers * kEpiBytes, empty_bar = full_bar + 8 * STAGES;

  // Work units: CLUSTER M-tiles of one N column; CTA `rank` of a cluster takes M-tile `rank`.
  const uint32_t rank = CLUSTER > 1 ? cluster_ctarank() : 0;
  const int n_tiles_out = ((p.M + BM * CLUSTER - 1) / (BM * CLUSTER)) * ((p.N + BN - 1) / BN);
  const int total_tiles = (p.K + kWgmmaBK - 1) / kWgmmaBK;  // K stages per output tile
  const int tiles_per_chunk = p.kc / kWgmmaBK;
  const int n_groups = SPLIT ? (p.S + chunks_per_item - 1) / chunks_per_item : 1;
  const int n_units = n_tiles_out * n_groups;
  const int first_unit = blockIdx.x / CLUSTER, unit_stride = gridDim.x / CLUSTER;
  // Work unit -> output tile (raster number), origin and its K stages [t0, t1).
  auto unit_range = [&](int unit, int& tile, int& m0, int& n0, int& t0, int& t1) {
    tile = SPLIT ? unit % n_tiles_out : unit;
    wgmma_tile_origin<BM * CLUSTER, BN>(p, tile, m0, n0);
    m0 += int(rank) * BM;  // may lie past M (odd M-tile count): an all-zero, unstored tile
    t0 = 0;
    t1 = total_tiles;
    if constexpr (SPLIT) {
      const int g = unit / n_tiles_out;
      t0 = g * chunks_per_item * tiles_per_chunk;
      t1 = min(total_tiles, t0 + chunks_per_item * tiles_per_chunk);
    }
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full_bar + 8 * s, 1);               // the producer's expect_tx arrival
      mbar_init(empty_bar + 8 * s, CLUSTER * kConsumers * 4);  // per consumer warp, per CTA
    }
    mbar_init_fence();
    tma_prefetch_desc(&tmap_x);
    tma_prefetch_desc(&tmap_w);
    if constexpr (EPI_N > 0) tma_prefetch_desc(&tmap_y);
  }
  if constexpr (CLUSTER > 1) cluster_sync();  // the peer's barriers exist before any use
  else __syncthreads();
  // Loads the w rows of stage buffer s for K-stage t: the whole tile, or this CTA's half,
  // multicast to the pair.
  auto load_w = [&](int s, int t, int n0) {
    if constexpr (CLUSTER == 1)
      tma_load_2d(smem_b + s * kStageB, &tmap_w, full_bar + 8 * s, t * kWgmmaBK, n0);
    else
      tma_load_2d_multicast(smem_b + s * kStageB + rank * (kStageB / 2), &tmap_w,
                            full_bar + 8 * s, t * kWgmmaBK, n0 + int(rank) * (BN / 2), 0x3);
  };

  const int wg = threadIdx.x / 128;
  if (wg == 0) {  // producer warpgroup: one thread issues every copy
    if constexpr (kMoveRegs) setmaxnreg_dec<40>();
    if (threadIdx.x == 0 && first_unit < n_units) {
      int tile, m0, n0, t0, t1;
      unit_range(first_unit, tile, m0, n0, t0, t1);
      // The first stages' weights stream in before pdl_wait (no kernel of a forward pass
      // writes weights); x, written by the previous kernel, only after it.
      const int prologue = min(STAGES, t1 - t0);
      for (int t = 0; t < prologue; ++t) {
        // Own x tile plus both halves of w (OOB fill counts too).
        mbar_arrive_expect_tx(full_bar + 8 * t, kStageA + kStageB);
        load_w(t, t0 + t, n0);
      }
      pdl_wait();
      pdl_launch_dependents();
      for (int t = 0; t < prologue; ++t)
        tma_load_2d(smem_a + t * kStageA, &tmap_x, full_bar + 8 * t, (t0 + t) * kWgmmaBK, m0);
      int it = prologue;  // stages issued so far, over all of this CTA's tiles
      for (int unit = first_unit; unit < n_units; unit += unit_stride) {
        unit_range(unit, tile, m0, n0, t0, t1);
        for (int t = t0 + (unit == first_unit ? prologue : 0); t < t1; ++t, ++it) {
          const int s = it % STAGES;
          if (it >= STAGES) mbar_wait(empty_bar + 8 * s, ((it / STAGES) - 1) & 1);
          mbar_arrive_expect_tx(full_bar + 8 * s, kStageA + kStageB);
          tma_load_2d(smem_a + s * kStageA, &tmap_x, full_bar + 8 * s, t * kWgmmaBK, m0);
          load_w(s, t, n0);
        }
      }
    }
  } else {
    if constexpr (kMoveRegs) setmaxnreg_inc<232>();
    pdl_wait();  // y may still be read by the previous kernel of the stream
    pdl_launch_dependents();

    // Consumer warpgroup c owns rows [64c, 64c + 64) of each tile.
    const int c = wg - 1, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    float acc[kAcc];
    float out[FOLD ? kAcc : 1];  // the fold of finished chunks (FOLD only)
#pragma unroll
    for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;

    // Releases stage buffer s: one arrival per warp on the empty barrier of every CTA that the
    // producers of the cluster write it for.
    auto release = [&](int s) {
      if (lane != 0) return;
      if constexpr (CLUSTER == 1) mbar_arrive(empty_bar + 8 * s);
      else
        for (uint32_t r = 0; r < CLUSTER; ++r) mbar_arrive_cluster(empty_bar + 8 * s, r);
    };
    constexpr int kConsumerThreads = kConsumers * 128;
    const int ct = threadIdx.x - 128;  // consumer thread index
    int it = 0;  // stages consumed so far, over all of this CTA's tiles
    for (int unit = first_unit; unit < n_units; unit += unit_stride) {
      int tile, m0, n0, t0, t1;
      unit_range(unit, tile, m0, n0, t0, t1);
      // SPLIT: the tile's chunk slots, S x BM x BN f32.
      float* slots = SPLIT ? p.partial + int64_t(tile) * p.S * (BM * BN) : nullptr;
      // Chunk by chunk; inside a chunk, stage by stage, one wgmma group (BK/16 k16 steps) per
      // stage with one group left in flight. No branch touches the accumulators inside the K
      // loop (ptxas would serialise the wgmmas otherwise).
      int pending = -1;  // stage whose wgmma group may still read shared memory
      for (int chunk_begin = t0; chunk_begin < t1; chunk_begin += tiles_per_chunk) {
        const int chunk_end = min(t1, chunk_begin + tiles_per_chunk);
        for (int t = chunk_begin; t < chunk_end; ++t, ++it) {
          const int s = it % STAGES;
          mbar_wait(full_bar + 8 * s, (it / STAGES) & 1);
          const uint64_t da = sw128_desc(smem_a + s * kStageA + c * (64 * 128));
          const uint64_t db = sw128_desc(smem_b + s * kStageB);
          wgmma_fence();  // the accumulators may have been written by ordinary code
#pragma unroll
          for (int kk = 0; kk < kWgmmaBK / 16; ++kk)  // k16 steps in increasing k: the fixed order
            wgmma_tile<BN>(acc, da + 2 * kk, db + 2 * kk);  // +32 bytes per k16 in the 128-B row
          wgmma_commit();
          wgmma_wait<1>();  // the previous stage's group is done: its buffers may be refilled
          if (pending >= 0) release(pending);
          pending = s;
        }
        wgmma_wait<0>();  // the chunk's partial p_c is complete in acc
        release(pending);
        pending = -1;
        if constexpr (FOLD) {
          const bool first = chunk_begin == 0;  // out = p_0, then out = out + p_c in chunk order
#pragma unroll
          for (int i = 0; i < kAcc; ++i) {
            out[i] = first ? acc[i] : __fadd_rn(out[i], acc[i]);
            acc[i] = 0.f;
          }
        }
        if constexpr (SPLIT) {  // p_c to its own slot; the fold comes when all items are in
          const int chunk = chunk_begin / tiles_per_chunk;
          wgmma_store_partial<BN, kConsumerThreads>(acc, slots + int64_t(chunk) * (BM * BN), ct);
#pragma unroll
          for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;
        }
      }

      const int r_base = m0 + c * 64 + warp * 16 + lane / 4, c_base = n0 + 2 * (lane % 4);
      if constexpr (SPLIT) {
        // Count this item in (integer atomic). The item that completes the count folds all S
        // slots in chunk order; the arrival order never reaches the arithmetic.
        __shared__ int split_last;
        __threadfence();
        consumer_bar_sync(kConsumerThreads);
        if (ct == 0) {
          int* counter = p.counters + tile;
          const int prev = atomicAdd(counter, 1);
          split_last = prev == n_groups - 1;
          if (split_last) *counter = 0;  // ready for the next launch on this stream
        }
        consumer_bar_sync(kConsumerThreads);
        if (split_last) {
          __threadfence();
          wgmma_fold_partials<BN, kConsumerThreads>(acc, slots, p.S, ct);
          wgmma_store<BN>(acc, p, r_base, c_base);
#pragma unroll
          for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;  // the next item starts from +0
        }
      } else if constexpr (EPI_N > 0) {
        // Named barrier 2 + c: the warpgroup's own.
        auto& v = [&]() -> auto& { if constexpr (FOLD) return out; else return acc; }();
        wgmma_store_tma<BN, EPI_N>(v, &tmap_y, smem_epi + c * kEpiBytes, m0 + c * 64, n0, p.M,
                                   p.N, 2 + c);
        if constexpr (!FOLD) {
#pragma unroll
          for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;  // the next tile starts from +0
        }
      } else if constexpr (FOLD) {
        wgmma_store<BN>(out, p, r_base, c_base);
      } else {
        wgmma_store<BN>(acc, p, r_base, c_base);
#pragma unroll
        for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;  // the next tile starts from +0
      }
    }
    // The bulk stores must finish reading shared memory (and writing y) before the CTA exits.
    if constexpr (EPI_N > 0)
      if (threadIdx.x % 128 == 0) bulk_wait<0>();
  }
  if constexpr (CLUSTER > 1) {
    __syncwarp();
    cluster_sync();  // no CTA exits while its peer may still multicast into it or arrive on it
  }
#else
  __trap();  // built only for sm_90a; the host never launches it elsewhere
#endif
}

}  // namespace bitexact::ops::cuda::linear_detail
