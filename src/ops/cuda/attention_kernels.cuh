// The CUDA attention kernels over the paged KV cache (rule 4 of ARCHITECTURE.md). Every grid
// shares attention_tile.cuh's per-sub-tile arithmetic and merge function, so all give equal bits:
//  - decode (attention_decode.cuh, batch-invariant decode): warps stream sub-tiles through
//    private K/V rings; a chunk per warp or 4 warps per chunk; chunk partials folded by
//    merge_chunks_kernel (here) or by the last CTA to arrive.
//  - tile4 (attention_tile4.cuh, the tiniest decode grids): 4 warps per sub-tile, a cluster of 4
//    CTAs per chunk; chunk partials merged by merge_chunks_kernel.
//  - stream (attention_stream.cuh, the legacy decode grid, kept for the smallest grids): CTA per
//    (token, kv head, run of chunks of 256 keys); its 4 warps take the 4 sub-tiles of a chunk,
//    merged in order (park_warp_partial + merge_warps_store); a token with several chunks
//    stores chunk partials and merge_chunks_kernel (or merge_chunks_staged_kernel, for small
//    grids) merges them left to right.
//  - split (here): one CTA per (token, kv head, split); in non-invariant mode with spw sub-tiles
//    per warp, so a split covers 256 * spw keys chosen from the batch size.
//  - fused (attention_fused.cuh, prefill): CTA per (128 query rows, kv head) looping over the
//    chunks itself, merging sub-tiles and chunks in the same order.
#pragma once

#include "ops/cuda/attention_tile.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda::attn {

struct Params {
  const __nv_bfloat16* q;  // [M, Hq, DH] at strides q_s0, q_s1
  int64_t q_s0, q_s1;
  const __nv_bfloat16* k_cache;  // [blocks, block_size, Hkv, DH] at strides c_s0, c_s1, c_s2
  const __nv_bfloat16* v_cache;
  int64_t c_s0, c_s1, c_s2;
  const int32_t* token_seq;    // [M]
  const int32_t* token_pos;    // [M]
  const int32_t* block_table;  // [seqs, max_blocks] at stride bt_s0
  int64_t bt_s0;
  int block_shift;     // log2(block_size)
  __nv_bfloat16* out;  // [M, Hq, DH] at strides o_s0, o_s1
  int64_t o_s0, o_s1;
  int M, hq, hkv, group;
  float scale_log2;  // scale * log2(e): scores live in the log2 domain
  // split grid only: chunk partials [M, hq, max_splits] x (o[DH], then m, l)
  float* part_o;
  float* part_ml;
  int max_splits;
  int subtiles_per_warp;  // 1 in batch-invariant mode (split = kAttentionChunk keys)
};

// Each warp parks its partial (f32, rows padded to DH + 8 floats against bank conflicts) in a
// shared-memory area of its own; then merge_warps_store merges warps 0..3 in order.
template <int DH>
__device__ __forceinline__ void park_warp_partial(float* po, float* sm_m, float* sm_l,
                                                  const Partial<DH>& acc) {
  constexpr int kOPitch = DH + 8;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < DH / 8; ++n) {
    *reinterpret_cast<float2*>(po + g * kOPitch + n * 8 + 2 * t) =
        make_float2(acc.o[n][0], acc.o[n][1]);
    *reinterpret_cast<float2*>(po + (g + 8) * kOPitch + n * 8 + 2 * t) =
        make_float2(acc.o[n][2], acc.o[n][3]);
  }
  if (t == 0) {
    sm_m[g] = acc.m[0];
    sm_l[g] = acc.l[0];
    sm_m[g + 8] = acc.m[1];
    sm_l[g + 8] = acc.l[1];
  }
}

// The chunk partial = ((w0 (+) w1) (+) w2) (+) w3 over the 4 warps' parked partials (warp w's at
// smem + w * 2 * kSubKeys * (DH + kPad) + area_off, in bf16 elements). A token whose keys fit in
// one split gets its output (o / l) directly; otherwise the chunk partial goes to the workspace.
template <int DH>
__device__ __forceinline__ void merge_warps_store(const Params& p, const __nv_bfloat16* smem,
                                                  int area_off, const float (*sm_m)[16],
                                                  const float (*sm_l)[16], int m, int kvh,
                                                  int split, bool single) {
  constexpr int kPitch = DH + kPad, kOPitch = DH + 8;
  auto area = [&](int w) {
    return reinterpret_cast<const float*>(smem + w * 2 * kSubKeys * kPitch + area_off);
  };
  for (int i = threadIdx.x; i < p.group * DH; i += blockDim.x) {
    const int r = i / DH, d = i % DH;
    float om = sm_m[0][r], ol = sm_l[0][r];
    float ov = area(0)[r * kOPitch + d];
#pragma unroll
    for (int w = 1; w < 4; ++w) {
      float mm, fa, fb;
      int mode;
      merge_coeffs(om, sm_m[w][r], mm, fa, fb, mode);
      ol = merge_value(ol, sm_l[w][r], fa, fb, mode);
      ov = merge_value(ov, area(w)[r * kOPitch + d], fa, fb, mode);
      om = mm;
    }
    const int h = kvh * p.group + r;
    if (single) {
      p.out[int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1 + d] = __float2bfloat16_rn(__fdiv_rn(ov, ol));
    } else {
      const int64_t slot = (int64_t(m) * p.hq + h) * p.max_splits + split;
      p.part_o[slot * DH + d] = ov;
      if (d == 0) {
        p.part_ml[slot * 2] = om;
        p.part_ml[slot * 2 + 1] = ol;
      }
    }
  }
}

// Split grid: one CTA per (token, kv head, split of 256 * spw keys), 4 warps; warp w takes
// sub-tiles [w * spw, (w + 1) * spw) of the split, merged left to right.
template <int DH, bool kMulti>
__global__ void __launch_bounds__(128) split_kernel(Params p) {
  pdl_wait();  // PDL (pdl.cuh): nothing of an earlier kernel is read before this
  pdl_launch_dependents();
  constexpr int kPitch = DH + kPad;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __shared__ float sm_m[4][16], sm_l[4][16];
  __shared__ int s_tab[4][kSubKeys];  // per warp: physical blocks of its sub-tile
  // blockIdx.x = kvh + hkv * (split + splits * token): the kv heads of one (token, split) are
  // neighbours in launch order, so they stream the interleaved rows of the same cache blocks
  // together (better DRAM locality than one head at a time). Launch order never changes bits.
  const int kvh = blockIdx.x % p.hkv, split = (blockIdx.x / p.hkv) % p.max_splits,
            m = blockIdx.x / (p.hkv * p.max_splits);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  const int pos = p.token_pos[m];
  const int split_keys = kSubTiles * kSubKeys * p.subtiles_per_warp;
  if (split * split_keys > pos) return;  // this token has no keys in this split
  const int32_t* blocks = p.block_table + int64_t(p.token_seq[m]) * p.bt_s0;
  const int64_t head_off = int64_t(kvh) * p.c_s2;

  const __nv_bfloat16* qrow = p.q + int64_t(m) * p.q_s0 + int64_t(kvh) * p.group * p.q_s1;
  uint32_t qf[DH / 16][4];
  load_q_frags<DH>(qf, g < p.group ? qrow + g * p.q_s1 : nullptr,
                   g + 8 < p.group ? qrow + (g + 8) * p.q_s1 : nullptr);
  const int last[2] = {g < p.group ? pos : -1, g + 8 < p.group ? pos : -1};

  __nv_bfloat16* ks = smem + warp * 2 * kSubKeys * kPitch;
  __nv_bfloat16* vs = ks + kSubKeys * kPitch;
  // spw sub-tiles per warp merged left to right (kMulti = false: spw = 1, the bits of
  // stream_kernel; kept as the one-chunk-per-CTA alternative, see set_attention_streaming).
  Partial<DH> acc;
  acc.clear();
  const int spw = kMulti ? p.subtiles_per_warp : 1;
  for (int j = 0; j < spw; ++j) {
    const int key0 = split * split_keys + (warp * spw + j) * kSubKeys;
    if (key0 > pos) break;  // later sub-tiles are empty: merging them is the identity
    load_table<kSubKeys>(s_tab[warp], blocks, p.block_shift, key0, pos, lane, 32);
    __syncwarp();
    load_keys<DH, kSubKeys, 32>(ks, p.k_cache, s_tab[warp], p.block_shift, p.c_s0, p.c_s1, head_off,
                                key0, pos, lane);
    cp_async_commit();
    load_keys<DH, kSubKeys, 32>(vs, p.v_cache, s_tab[warp], p.block_shift, p.c_s0, p.c_s1, head_off,
                                key0, pos, lane);
    cp_async_commit();
    cp_async_wait<1>();  // K is here; V may still be in flight during S = Q K^T
    __syncwarp();
    auto wait_v = [] {
      cp_async_wait<0>();
      __syncwarp();
    };
    if constexpr (kMulti) {
      Partial<DH> sub;
      subtile_partial<DH>(qf, ks, vs, key0, last, p.scale_log2, sub, wait_v);
      merge_partial<DH>(acc, sub);
    } else {  // spw = 1: computed straight into acc, equal to merge(empty, sub) bit for bit
      subtile_partial<DH>(qf, ks, vs, key0, last, p.scale_log2, acc, wait_v);
    }
    __syncwarp();  // the next iteration overwrites ks / vs
  }
  park_warp_partial<DH>(reinterpret_cast<float*>(ks), sm_m[warp], sm_l[warp], acc);
  __syncthreads();
  merge_warps_store<DH>(p, smem, 0, sm_m, sm_l, m, kvh, split, pos < split_keys);
}

// Merges the chunk partials of (token, q head) left to right and writes out = o / l.
// One output element of a chunk merged into the running (om, ol, ov), left to right: merge_partial's
// arithmetic for one row and one dim. Both chunk-merge kernels run exactly this.
__device__ __forceinline__ void merge_element(float& om, float& ol, float& ov, float m, float l, float o) {
  float mm, fa, fb;
  int mode;
  merge_coeffs(om, m, mm, fa, fb, mode);
  ol = merge_value(ol, l, fa, fb, mode);
  ov = merge_value(ov, o, fa, fb, mode);
  om = mm;
}

// blockIdx.x = token, y = q head; DH threads, one output element each. The (m, l) pairs of up to
// DH chunks are staged in shared memory by all threads at once and the o values are loaded 8
// chunks ahead, so the sequential merge does not wait on one load per chunk; the arithmetic and
// its order are those of merge_partial.
template <int DH>
__global__ void __launch_bounds__(DH) merge_chunks_kernel(Params p) {
  __shared__ float s_m[DH], s_l[DH];
  const int m = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const int split_keys = kSubTiles * kSubKeys * p.subtiles_per_warp;
  // PDL (pdl.cuh): the position is step metadata, read before the wait; the partials after it.
  const int n = p.token_pos[m] / split_keys + 1;
  pdl_wait();
  pdl_launch_dependents();
  if (n == 1) return;  // written by split_kernel
  const int64_t base = (int64_t(m) * p.hq + h) * p.max_splits;
  float om = -INFINITY, ol = 0.0f, ov = 0.0f;  // empty: the first merge takes chunk 0 exactly
  for (int c0 = 0; c0 < n; c0 += DH) {
    const int cn = min(DH, n - c0);
    __syncthreads();
    if (d < cn) {
      s_m[d] = p.part_ml[(base + c0 + d) * 2];
      s_l[d] = p.part_ml[(base + c0 + d) * 2 + 1];
    }
    __syncthreads();
    for (int c = 0; c < cn; c += 8) {
      float o8[8];
#pragma unroll
      for (int u = 0; u < 8; ++u)
        o8[u] = c + u < cn ? p.part_o[(base + c0 + c + u) * DH + d] : 0.0f;
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (c + u >= cn) break;
        merge_element(om, ol, ov, s_m[c + u], s_l[c + u], o8[u]);
      }
    }
  }
  p.out[int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1 + d] = __float2bfloat16_rn(__fdiv_rn(ov, ol));
}

// merge_chunks_kernel for small grids (few tokens x heads, where each CTA's chain of load
// latencies is the cost): the partials of up to kBatch chunks (32 KB: [chunks][DH] are
// contiguous) are staged in shared memory with one round of 16-byte cp.async copies by all
// threads, and their (m, l) pairs with plain loads, so a round waits on one memory latency, not
// one per 8 chunks. Same arithmetic in the same order. (Not used at batch 64: the build that
// used it there measured b64 x 16k 1610 vs 1559 us, not isolated from other changes; H100.)
template <int DH>
__global__ void __launch_bounds__(DH) merge_chunks_staged_kernel(Params p) {
  constexpr int kBatch = 32768 / (DH * 4);
  __shared__ __align__(16) float s_o[kBatch * DH];
  __shared__ float s_m[kBatch], s_l[kBatch];
  const int m = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const int split_keys = kSubTiles * kSubKeys * p.subtiles_per_warp;
  // PDL (pdl.cuh): the position is step metadata, read before the wait; the partials after it.
  const int n = p.token_pos[m] / split_keys + 1;
  pdl_wait();
  pdl_launch_dependents();
  if (n == 1) return;  // written by split_kernel
  const int64_t base = (int64_t(m) * p.hq + h) * p.max_splits;
  float om = -INFINITY, ol = 0.0f, ov = 0.0f;  // empty: the first merge takes chunk 0 exactly
  for (int c0 = 0; c0 < n; c0 += kBatch) {
    const int cn = min(kBatch, n - c0);
    __syncthreads();  // the previous round is consumed
    const float* src = p.part_o + (base + c0) * DH;
    for (int i = d; i < cn * DH / 4; i += DH) cp_async16(s_o + 4 * i, src + 4 * i, 16);
    cp_async_commit();
    for (int i = d; i < cn; i += DH) {
      s_m[i] = p.part_ml[(base + c0 + i) * 2];
      s_l[i] = p.part_ml[(base + c0 + i) * 2 + 1];
    }
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll 4
    for (int c = 0; c < cn; ++c) merge_element(om, ol, ov, s_m[c], s_l[c], s_o[c * DH + d]);
  }
  p.out[int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1 + d] = __float2bfloat16_rn(__fdiv_rn(ov, ol));
}

}  // namespace bitexact::ops::cuda::attn
