// The decode grid of the tiniest grids (batch 1-2, short context: a few sub-tiles per kv head, so
// one warp per sub-tile leaves the GPU idle and each sub-tile's latency chain is the whole cost).
// Here one CTA of 4 warps computes ONE sub-tile, and a cluster of 4 CTAs one chunk:
//  - CTA r of the cluster takes sub-tile 4c + r; its 128 threads copy K and V (1/4 each);
//  - S = Q K^T: warp w computes the scores of keys [16 w, 16 w + 16), i.e. s[2w], s[2w+1] of
//    subtile_scores, with the same instructions (a score is its own mma chain over head_dim,
//    kk ascending, so the same bits whichever warp computes it) and parks them in shared memory;
//  - every warp reads the whole 16 x 64 tile back in the one-warp register layout (same lane,
//    same slot) and runs subtile_softmax itself: m, l and P are the one-warp bits;
//  - P V: warp w computes output dims [DH/4 w, DH/4 (w + 1)) over keys j = 0..3 in order
//    (subtile_pv_piece restricted to its n-tiles: same chain per output element);
//  - every CTA writes its sub-tile partial (rows < group) into CTA 0's shared memory (DSMEM),
//    and CTA 0 merges them with merge_parked_store, ((s0 (+) s1) (+) s2) (+) s3, as the
//    CTA-chunk decode grid does; chunk partials are folded by merge_chunks_kernel.
// So the bits are those of the other decode grids; only the latency chain is ~4x shorter.
#pragma once

#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/cluster.cuh"

namespace bitexact::ops::cuda::attn {

// Dynamic shared memory: K and V of the sub-tile, the score tile, 4 parking areas (CTA 0's are
// written by the whole cluster).
template <int DH>
__host__ __device__ constexpr int tile4_smem_bytes(int group) {
  return 2 * kSubKeys * (DH + kPad) * 2 + kSubKeys * 16 * 4 + 4 * park_floats<DH>(group) * 4;
}

// blockIdx.x = rank + 4 * (chunk + a.max_units * (kvh + hkv * token)); clusters of 4 CTAs.
template <int DH>
__global__ void __cluster_dims__(4, 1, 1) __launch_bounds__(128)
    tile4_kernel(Params p, DecodeArgs a) {
  // PDL (pdl.cuh): before pdl_wait only the step metadata (positions, sequences, block table:
  // ops.h's AttentionMeta precondition) is read, so the table lookups are off the critical path;
  // q and the KV cache (the previous kernel writes both) are read after it.
  constexpr int kPitch = DH + kPad, kOPitch = DH + 8;
  constexpr int kNt = DH / 32;  // 8-dim n-tiles of P V per warp
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ int s_tab[kSubKeys];
  __nv_bfloat16* ks = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* vs = ks + kSubKeys * kPitch;
  float* s_sc = reinterpret_cast<float*>(vs + kSubKeys * kPitch);  // [n 8][e 4][lane 32]
  float* park = s_sc + kSubKeys * 16;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int mat = lane >> 3, mr = lane & 7;
  const int rank = blockIdx.x & 3, rest = blockIdx.x >> 2;
  const int c = rest % a.max_units, mk = rest / a.max_units, kvh = mk % p.hkv, m = mk / p.hkv;
  const int pos = p.token_pos[m];
  const int nsub = pos / kSubKeys + 1, nchunks = (nsub + kSubTiles - 1) / kSubTiles;
  if (c >= nchunks) {  // uniform over the cluster
    pdl_wait();  // pdl.cuh: a CTA waits before it exits, so the chain of waits is never cut
    return;
  }
  cluster_arrive_relaxed();  // phase 1 ends once every CTA of the cluster runs (DSMEM is live)
  const int u = kSubTiles * c + rank, key0 = u * kSubKeys;
  const int park_stride = park_floats<DH>(p.group);
  if (u < nsub) {  // uniform over the CTA
    const int64_t head_off = int64_t(kvh) * p.c_s2;
    const int32_t* blocks = p.block_table + int64_t(p.token_seq[m]) * p.bt_s0;
    load_table<kSubKeys>(s_tab, blocks, p.block_shift, key0, pos, threadIdx.x, 128);
    pdl_wait();
    pdl_launch_dependents();
    const __nv_bfloat16* qrow = p.q + int64_t(m) * p.q_s0 + int64_t(kvh) * p.group * p.q_s1;
    uint32_t qf[DH / 16][4];
    load_q_frags<DH>(qf, g < p.group ? qrow + g * p.q_s1 : nullptr,
                     g + 8 < p.group ? qrow + (g + 8) * p.q_s1 : nullptr);
    __syncthreads();  // the table
    load_keys<DH, kSubKeys, 128>(ks, p.k_cache, s_tab, p.block_shift, p.c_s0, p.c_s1, head_off,
                                 key0, pos, threadIdx.x);
    cp_async_commit();
    load_keys<DH, kSubKeys, 128>(vs, p.v_cache, s_tab, p.block_shift, p.c_s0, p.c_s1, head_off,
                                 key0, pos, threadIdx.x);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // K has landed
    {
      // subtile_scores for n = 2 warp, 2 warp + 1 only (K piece `warp`).
      float s2[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i) s2[i][0] = s2[i][1] = s2[i][2] = s2[i][3] = 0.0f;
      const __nv_bfloat16* kp = ks + 16 * warp * kPitch;
#pragma unroll
      for (int kk = 0; kk < DH / 16; ++kk) {
        uint32_t b[4];
        ldmatrix_x4(b, kp + (mr + ((mat >> 1) << 3)) * kPitch + kk * 16 + ((mat & 1) << 3));
        mma_bf16(s2[0], qf[kk], b[0], b[1]);
        mma_bf16(s2[1], qf[kk], b[2], b[3]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) s_sc[((2 * warp + i) * 4 + e) * 32 + lane] = s2[i][e];
    }
    cp_async_wait<0>();
    __syncthreads();  // the score tile is complete; V has landed
    float s[kSubKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kSubKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = s_sc[(n * 4 + e) * 32 + lane];
    const int last[2] = {g < p.group ? pos : -1, g + 8 < p.group ? pos : -1};
    Partial<DH> sp;  // m and l; its o stays unused (this warp's dims are in `o`)
    subtile_softmax<DH>(s, key0, last, p.scale_log2, sp);
    float o[kNt][4];  // n-tile kNt * warp + i of the one-warp layout (registers, not sp.o[n])
#pragma unroll
    for (int i = 0; i < kNt; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
#pragma unroll
    for (int j = 0; j < kSubKeys / 16; ++j) {
      uint32_t pa[4];
      subtile_pack_p(s, j, pa);
      // subtile_pv_piece for n-tiles [kNt warp, kNt warp + kNt) only.
      const __nv_bfloat16* vp = vs + j * 16 * kPitch;
#pragma unroll
      for (int i = 0; i < kNt; i += 2) {
        const int n = kNt * warp + i;
        uint32_t b[4];
        ldmatrix_x4_trans(b, vp + (mr + ((mat & 1) << 3)) * kPitch + n * 8 + ((mat >> 1) << 3));
        mma_bf16(o[i], pa, b[0], b[1]);
        mma_bf16(o[i + 1], pa, b[2], b[3]);
      }
    }
    // subtile_finish: a row with no visible key is the empty partial.
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (sp.m[h] == -INFINITY) {
        sp.l[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < kNt; ++i) o[i][2 * h] = o[i][2 * h + 1] = 0.0f;
      }
    cluster_wait();  // phase 1: CTA 0 runs, its parking area may be written
    // park_rows, this warp's dims only, into CTA 0's area `rank`.
    const float* my = park + rank * park_stride;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int r = g + 8 * hh;
      if (r >= p.group) continue;
#pragma unroll
      for (int i = 0; i < kNt; ++i)
        st_cluster_f2(map_to_rank0(my + r * kOPitch + (kNt * warp + i) * 8 + 2 * t), o[i][2 * hh],
                      o[i][2 * hh + 1]);
      if (warp == 0 && t == 0) {
        st_cluster_f(map_to_rank0(my + p.group * kOPitch + r), sp.m[hh]);
        st_cluster_f(map_to_rank0(my + p.group * kOPitch + 16 + r), sp.l[hh]);
      }
    }
  } else {
    pdl_wait();  // touches no global memory, but keeps the contract uniform
    pdl_launch_dependents();
    cluster_wait();
  }
  cluster_arrive_release();  // phase 2: every partial is parked in CTA 0
  cluster_wait();
  if (rank == 0)
    merge_parked_store<DH, 128>(p, a, park, min(kSubTiles, nsub - kSubTiles * c), m, kvh, c,
                                nchunks == 1, threadIdx.x);
}

}  // namespace bitexact::ops::cuda::attn
