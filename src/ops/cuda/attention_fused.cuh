// The fused attention grid (prefill): one CTA per (16 * kWarps query rows, kv head), looping over
// the chunks of each run of same-sequence tokens in its rows; each K/V sub-tile is loaded once
// for all its rows. Arithmetic and merge order are those of split_kernel + merge_chunks_kernel:
// each chunk is the left-to-right merge of its 4 sub-tile partials, and chunk partials merge left
// to right.
#pragma once

#include "ops/cuda/attention_kernels.cuh"

namespace bitexact::ops::cuda::attn {

// Configurations (speed only, equal bits): kWarps warps of 16 MMA rows share each K/V sub-tile;
// kSlots sub-tiles of K/V are in flight in shared memory (the copy pipeline depth).
template <int DH, int kWarps, int kSlots>
constexpr int fused_smem_bytes() {
  return 2 * kSlots * kSubKeys * (DH + kPad) * 2 + 32 * kWarps * (DH / 2 + 4) * 4;
}

// The running (all chunks so far) partial of this thread's rows, parked in shared memory
// between chunks to keep registers for the tile math. Slot layout [field][thread].
template <int DH, int kThreads>
__device__ __forceinline__ void park(float* s, const Partial<DH>& a) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int n = 0; n < DH / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[(n * 4 + e) * kThreads + tid] = a.o[n][e];
  s[(DH / 2 + 0) * kThreads + tid] = a.m[0];
  s[(DH / 2 + 1) * kThreads + tid] = a.m[1];
  s[(DH / 2 + 2) * kThreads + tid] = a.l[0];
  s[(DH / 2 + 3) * kThreads + tid] = a.l[1];
}
template <int DH, int kThreads>
__device__ __forceinline__ void unpark(const float* s, Partial<DH>& a) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int n = 0; n < DH / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) a.o[n][e] = s[(n * 4 + e) * kThreads + tid];
  a.m[0] = s[(DH / 2 + 0) * kThreads + tid];
  a.m[1] = s[(DH / 2 + 1) * kThreads + tid];
  a.l[0] = s[(DH / 2 + 2) * kThreads + tid];
  a.l[1] = s[(DH / 2 + 3) * kThreads + tid];
}

// One CTA per (group of kFusedRows rows = tokens m0 .. m0 + kFusedRows/group - 1, kv head).
template <int DH, int kWarps, int kSlots>
__global__ void __launch_bounds__(32 * kWarps, 8 / kWarps) fused_kernel(Params p) {
  constexpr int kFusedThreads = 32 * kWarps, kFusedRows = 16 * kWarps;
  constexpr int kPitch = DH + kPad, kChunk = kSubTiles * kSubKeys;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* ks = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* vs = ks + kSlots * kSubKeys * kPitch;
  float* acc_s = reinterpret_cast<float*>(vs + kSlots * kSubKeys * kPitch);
  __shared__ int s_seq[kFusedRows], s_pos[kFusedRows];

  const int tokens = kFusedRows / p.group;  // tokens per CTA
  // blockIdx.x = kvh + hkv * tile: the kv heads of one tile run side by side (cache locality).
  const int kvh = blockIdx.x % p.hkv, m0 = (blockIdx.x / p.hkv) * tokens;
  const int ntok = min(tokens, p.M - m0);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  if (threadIdx.x < ntok) {
    s_seq[threadIdx.x] = p.token_seq[m0 + threadIdx.x];
    s_pos[threadIdx.x] = p.token_pos[m0 + threadIdx.x];
  }
  __syncthreads();

  // This lane's two rows: row = token_local * group + head_local.
  int tl[2];
  const __nv_bfloat16* qrow[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + g + 8 * h;
    tl[h] = r < ntok * p.group ? r / p.group : -1;
    qrow[h] = tl[h] < 0 ? nullptr
                        : p.q + int64_t(m0 + tl[h]) * p.q_s0 +
                              int64_t(kvh * p.group + r % p.group) * p.q_s1;
  }
  uint32_t qf[DH / 16][4];
  load_q_frags<DH>(qf, qrow[0], qrow[1]);
  {
    Partial<DH> empty;
    empty.clear();
    park<DH, kFusedThreads>(acc_s, empty);
  }
  const int64_t head_off = int64_t(kvh) * p.c_s2;

  for (int t0 = 0; t0 < ntok;) {  // runs of consecutive tokens of one sequence
    const int seq = s_seq[t0];
    int t1 = t0 + 1, run_last = s_pos[t0];
    while (t1 < ntok && s_seq[t1] == seq) run_last = max(run_last, s_pos[t1++]);
    const int last[2] = {tl[0] >= t0 && tl[0] < t1 ? s_pos[tl[0]] : -1,
                         tl[1] >= t0 && tl[1] < t1 ? s_pos[tl[1]] : -1};
    int warp_last = max(last[0], last[1]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      warp_last = max(warp_last, __shfl_xor_sync(0xffffffffu, warp_last, o));
    const int32_t* blocks = p.block_table + int64_t(seq) * p.bt_s0;
    // Software pipeline over the run's sub-tiles it = 4 c + j (slot it % kSlots of shared
    // memory): the copies of sub-tile it + kSlots are issued as soon as every warp is done with
    // sub-tile it, so loads overlap the math. One cp.async group per sub-tile (empty past the
    // end), so wait_group<kSlots - 1> always means "sub-tile it has landed".
    const int nsub = run_last / kSubKeys + 1;
    auto issue = [&](int it) {
      if (it < nsub) {
        const int key0 = it * kSubKeys, slot = it % kSlots;
        const int32_t* tab = blocks + (key0 >> p.block_shift);
        load_keys<DH, kSubKeys, kFusedThreads>(ks + slot * kSubKeys * kPitch, p.k_cache, tab,
                                               p.block_shift, p.c_s0, p.c_s1, head_off, key0,
                                               run_last, threadIdx.x);
        load_keys<DH, kSubKeys, kFusedThreads>(vs + slot * kSubKeys * kPitch, p.v_cache, tab,
                                               p.block_shift, p.c_s0, p.c_s1, head_off, key0,
                                               run_last, threadIdx.x);
      }
      cp_async_commit();
    };
    __syncthreads();  // the previous run's warps are done with every slot
#pragma unroll 1
    for (int it = 0; it < kSlots; ++it) issue(it);
    Partial<DH> chunk;
#pragma unroll 1
    for (int it = 0; it < nsub; ++it) {
      const int c = it / kSubTiles, j = it % kSubTiles, key0 = it * kSubKeys;
      cp_async_wait<kSlots - 1>();
      __syncthreads();  // sub-tile it is visible to every warp
      if (j == 0) chunk.clear();
      if (key0 <= warp_last) {  // else every row of this warp gets the empty partial: identity
        Partial<DH> sub;
        const int slot = it % kSlots;
        subtile_partial<DH>(qf, ks + slot * kSubKeys * kPitch, vs + slot * kSubKeys * kPitch, key0,
                            last, p.scale_log2, sub, [] {});
        merge_partial<DH>(chunk, sub);
      }
      if ((j == kSubTiles - 1 || it == nsub - 1) && c * kChunk <= warp_last) {
        Partial<DH> acc;  // chunk done: running partial (+)= chunk partial
        unpark<DH, kFusedThreads>(acc_s, acc);
        merge_partial<DH>(acc, chunk);
        park<DH, kFusedThreads>(acc_s, acc);
      }
      __syncthreads();  // every warp is done with this slot
      issue(it + kSlots);
    }
    t0 = t1;
  }

  Partial<DH> acc;
  unpark<DH, kFusedThreads>(acc_s, acc);
  const int t = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (qrow[h] == nullptr) continue;
    const int r = warp * 16 + g + 8 * h;
    __nv_bfloat16* o =
        p.out + int64_t(m0 + tl[h]) * p.o_s0 + int64_t(kvh * p.group + r % p.group) * p.o_s1;
#pragma unroll
    for (int n = 0; n < DH / 8; ++n) {
      o[n * 8 + 2 * t] = __float2bfloat16_rn(__fdiv_rn(acc.o[n][2 * h], acc.l[h]));
      o[n * 8 + 2 * t + 1] = __float2bfloat16_rn(__fdiv_rn(acc.o[n][2 * h + 1], acc.l[h]));
    }
  }
}

}  // namespace bitexact::ops::cuda::attn
