// The streaming split grid (the legacy decode grid of batch-invariant mode, still the fastest for
// the smallest grids; see pick_decode in attention.cu): one CTA per (token, kv head, run of
// `cpc` consecutive chunks). Each chunk's partial is computed exactly as split_kernel computes it
// (warp w = sub-tile w, warps merged in order), so bits do not depend on cpc; what changes is
// that a warp prefetches its next chunk's K while it computes P V, and V while the CTA merges.
#pragma once

#include "ops/cuda/attention_kernels.cuh"

namespace bitexact::ops::cuda::attn {

// blockIdx.x = kvh + hkv * (group + groups * token); chunks [group * cpc, group * cpc + cpc).
template <int DH>
__global__ void __launch_bounds__(128) stream_kernel(Params p, int cpc) {
  pdl_wait();  // PDL (pdl.cuh): nothing of an earlier kernel is read before this
  pdl_launch_dependents();
  constexpr int kPitch = DH + kPad, kChunk = kSubTiles * kSubKeys;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* smem = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __shared__ float sm_m[4][16], sm_l[4][16];
  __shared__ int s_tab[4][kSubKeys];  // per warp: physical blocks of its next sub-tile
  const int groups = (p.max_splits + cpc - 1) / cpc;
  const int kvh = blockIdx.x % p.hkv, grp = (blockIdx.x / p.hkv) % groups,
            m = blockIdx.x / (p.hkv * groups);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  const int pos = p.token_pos[m];
  const int nchunks = pos / kChunk + 1;
  const int c_begin = grp * cpc, c_end = min(c_begin + cpc, nchunks);
  if (c_begin >= c_end) return;  // this token has no keys in these chunks
  const int32_t* blocks = p.block_table + int64_t(p.token_seq[m]) * p.bt_s0;
  const int64_t head_off = int64_t(kvh) * p.c_s2;

  const __nv_bfloat16* qrow = p.q + int64_t(m) * p.q_s0 + int64_t(kvh) * p.group * p.q_s1;
  uint32_t qf[DH / 16][4];
  load_q_frags<DH>(qf, g < p.group ? qrow + g * p.q_s1 : nullptr,
                   g + 8 < p.group ? qrow + (g + 8) * p.q_s1 : nullptr);
  const int last[2] = {g < p.group ? pos : -1, g + 8 < p.group ? pos : -1};

  __nv_bfloat16* ks = smem + warp * 2 * kSubKeys * kPitch;
  __nv_bfloat16* vs = ks + kSubKeys * kPitch;
  auto key0_of = [&](int c) { return c * kChunk + warp * kSubKeys; };
  // One cp.async group per K and per V load, committed even when empty, so wait_group<1>
  // always means "all but the newest group have landed".
  auto issue_k = [&](int c) {
    if (c < c_end && key0_of(c) <= pos) {
      load_table<kSubKeys>(s_tab[warp], blocks, p.block_shift, key0_of(c), pos, lane, 32);
      __syncwarp();
      load_keys<DH, kSubKeys, 32>(ks, p.k_cache, s_tab[warp], p.block_shift, p.c_s0, p.c_s1,
                                  head_off, key0_of(c), pos, lane);
    }
    cp_async_commit();
  };
  auto issue_v = [&](int c) {  // uses the table issue_k(c) left in s_tab
    if (c < c_end && key0_of(c) <= pos)
      load_keys<DH, kSubKeys, 32>(vs, p.v_cache, s_tab[warp], p.block_shift, p.c_s0, p.c_s1,
                                  head_off, key0_of(c), pos, lane);
    cp_async_commit();
  };
  issue_k(c_begin);
  issue_v(c_begin);
  for (int c = c_begin; c < c_end; ++c) {
    Partial<DH> acc;
    acc.clear();  // a warp past the token's last key (last chunk only) parks the empty partial
    if (key0_of(c) <= pos) {
      cp_async_wait<1>();  // K_c has landed (V_c may still be in flight)
      __syncwarp();
      subtile_partial<DH>(qf, ks, vs, key0_of(c), last, p.scale_log2, acc, [&] {
        __syncwarp();        // every lane is done reading K_c
        issue_k(c + 1);      // prefetch: lands during P V and the merge
        cp_async_wait<1>();  // V_c has landed
        __syncwarp();
      });
    } else {
      issue_k(c + 1);  // keeps the group count in step (nothing is issued past the last key)
    }
    __syncwarp();  // every lane is done reading V_c: its area now holds the partial
    park_warp_partial<DH>(reinterpret_cast<float*>(vs), sm_m[warp], sm_l[warp], acc);
    __syncthreads();
    merge_warps_store<DH>(p, smem, kSubKeys * kPitch, sm_m, sm_l, m, kvh, c, nchunks == 1);
    __syncthreads();  // the parked partials are read: V areas are free again
    issue_v(c + 1);
  }
  cp_async_wait<0>();
}

}  // namespace bitexact::ops::cuda::attn
