// The wgmma prefill attention grid (Hopper, sm_90a): one CTA per (128 query rows = 128/G tokens x
// G heads, kv head), like the fused grid, but two warpgroups of 64 rows computing with wgmma and
// streaming the 64-key K/V sub-tiles of the paged cache (cp.async, zero-filled past the run's
// last key) through an mbarrier ring they fill together, each sub-tile 3 ahead of its use. No
// CTA-wide barrier per sub-tile: the warpgroups drift (up to one sub-tile), so one's softmax and
// merges overlap the other's tensor work; within a warpgroup, S of the next sub-tile runs on the
// tensor cores while the current one is merged.
// Bits: the same as every other grid. S = Q K^T is a chain of wgmma.m64n64k16 over head_dim in
// ascending k16 steps from zeroed registers (equal to the mma.sync chain: docs/PERFORMANCE.md,
// GEMM section), A = Q in registers (load_q_frags: the mma.sync A fragment is the wgmma one);
// the accumulator is, per warp, exactly attention_tile.cuh's s[8][4], so subtile_softmax and
// subtile_pack_p run unchanged on it; O = P V is a chain of 4 wgmma.m64nDHk16 over the sub-tile's
// key k16 steps from zero (A = P packed by subtile_pack_p; B = V, N-major), i.e.
// Partial<DH>::o. Sub-tiles merge left to right into the chunk partial with merge_partial's
// arithmetic (the first is a move: merging into an empty partial takes b), chunk partials left to
// right into the running partial (parked in shared memory); o / l by __fdiv_rn.
// Fewer instructions per sub-tile than the first version (1.2-1.3x, docs/notes/cuda_ops.md):
// sub-tiles whose keys every row of the lane sees run subtile_softmax with last = INT_MAX (the
// mask's select would keep every value, so it folds away); the chunk -> running merge picks
// merge_value's case once per row; each thread copies 4 consecutive keys of one cache block with
// one block-table read, made a sub-tile ahead, and without zero-fill selects when all are visible;
// the row max as a tree (subtile_softmax<DH, true>). Tried and measured without gain (session 5):
// copies issued while P V runs, FA3's warpgroup ping-pong, a 2-deep lead, and exp2f as one ex2.
#pragma once

#include <climits>

#include "ops/cuda/attention_kernels.cuh"
#include "ops/cuda/attention_wgmma_ops.cuh"
#include "ops/cuda/gemm/wgmma_ops.cuh"

namespace bitexact::ops::cuda::attn {

constexpr int kPwRows = 128;     // query rows per CTA (2 warpgroups x 64)
// 256 threads: 255 registers each. (A producer warp or warpgroup beside them, 288 or 384
// threads, caps every thread at 168: the register file is split among the 4 SM sub-partitions,
// and ptxas did not give the consumers the registers setmaxnreg would move to them.)
constexpr int kPwThreads = 256;
constexpr int kPwLead = 3;  // a sub-tile's copies are issued this many sub-tiles ahead of its use
// Shared memory: kStages K and V sub-tiles (each 64 x DH bf16 as DH/64 swizzled 8 KB halves), the
// two running partials ([field][thread], DH/2 + 4 fields), 2 x kStages mbarriers, and slack to
// align the base to 1024 bytes (swizzle atoms).
template <int DH, int kStages>
constexpr int prefill_wgmma_smem_bytes() {
  return 2 * kStages * (DH / 64) * 8192 + 2 * (DH / 2 + 4) * 128 * 4 + 16 * kStages + 1024;
}

// Byte offset of 16-byte chunk `seg` (of DH / 8) of row `row` in a 64-row tile of DH/64 halves of
// 128-byte swizzled rows.
__device__ __forceinline__ uint32_t pw_swz(int row, int seg) {
  return uint32_t((seg >> 3) * 8192 + row * 128 + (((seg & 7) ^ (row & 7)) << 4));
}

template <int DH>
__device__ __forceinline__ void pw_wgmma_pv(float (&o)[DH / 8][4], const uint32_t (&a)[4],
                                            uint64_t db) {
  if constexpr (DH == 128) wgmma_rs_n128_tb(o, a, db);
  else wgmma_rs_n64_tb(o, a, db);
}

// kFlat (tests only) breaks rule 4 on purpose: every sub-tile is merged straight into the running
// partial (no chunk level), a different sum order, so the bit comparisons can be shown to fail.
// Profile (ncu, 4k, the first version): ~1400 instructions per warp per sub-tile, issue slots 49%
// busy (2 warps per scheduler), tensor pipe ~17%: instruction- and latency-bound. Software
// pipelining (softmax of S(i + 1) beside P V(i), FA3-style) spilled at 255 registers and was
// 1.15-1.6x slower; the chunk partial would have to leave the registers first.
template <int DH, int kStages, bool kFlat = false>
__global__ void __launch_bounds__(kPwThreads, 1) prefill_wgmma_kernel(Params p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  namespace ld = linear_detail;
  static_assert(kStages >= kPwLead + 1, "the ring must cover the lead");
  constexpr int kSegs = DH / 8;
  constexpr int kTile = (DH / 64) * 8192;          // bytes of a 64 x DH bf16 tile
  // One warpgroup's running partial in shared memory: o, then m[2], l[2].
  constexpr int kParkFloats = (DH / 2 + 4) * 128;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;
  const uint32_t k_s = base, v_s = k_s + kStages * kTile, park_s = v_s + kStages * kTile;
  float* park_all = reinterpret_cast<float*>(smem_raw + (park_s - raw));
  const uint32_t full_bar = park_s + 2 * kParkFloats * 4;
  const uint32_t empty_bar = full_bar + 8 * kStages;
  __shared__ int s_seq[kPwRows], s_pos[kPwRows];

  const int tokens = kPwRows / p.group;  // tokens per CTA
  // blockIdx.x = kvh + hkv * (reversed tile): the kv heads of one tile run side by side (cache
  // locality); the last tiles (most keys under the causal mask) start first (shorter tail).
  const int ntiles = (p.M + tokens - 1) / tokens;
  const int kvh = blockIdx.x % p.hkv, m0 = (ntiles - 1 - int(blockIdx.x / p.hkv)) * tokens;
  const int ntok = min(tokens, p.M - m0);
  if (threadIdx.x < ntok) {
    s_seq[threadIdx.x] = p.token_seq[m0 + threadIdx.x];
    s_pos[threadIdx.x] = p.token_pos[m0 + threadIdx.x];
  }
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      ld::mbar_init(full_bar + 8 * s, kPwThreads);  // every thread's cp.async arrival
      ld::mbar_init(empty_bar + 8 * s, 8);          // every warp, done reading
    }
    ld::mbar_init_fence();
  }
  __syncthreads();
  const int64_t head_off = int64_t(kvh) * p.c_s2;
  const int c = threadIdx.x / 128, wtid = threadIdx.x % 128;
  const int warp = wtid >> 5, lane = wtid & 31, g = lane >> 2, t = lane & 3;

  // The runs of consecutive tokens of one sequence, walked identically by every thread:
  // [t0, t1) and the last key position any of its rows sees.
  auto run_end = [&](int t0, int& t1, int& run_last) {
    const int seq = s_seq[t0];
    t1 = t0 + 1;
    run_last = s_pos[t0];
    while (t1 < ntok && s_seq[t1] == seq) run_last = max(run_last, s_pos[t1++]);
  };

  // ---- copies: every thread issues its share of each sub-tile, in ring order (run by run) ----
  struct Cursor {
    int q;         // ring index of the next sub-tile to issue
    int t0, t1;    // its run
    int run_last;  // the run's last key
    int sub;       // its sub-tile in the run
    int blk;       // the cache block of this thread's first key of that sub-tile
  } cur{0, 0, 0, -1, 0, 0};
  run_end(0, cur.t1, cur.run_last);
  const int seg = threadIdx.x % kSegs, mask = (1 << p.block_shift) - 1;
  constexpr int kKeysPerPass = kPwThreads / kSegs, kPasses = kSubKeys / kKeysPerPass;
  // Reads the block-table entry of the cursor's sub-tile for this thread, a sub-tile before its
  // copies are issued (so that their address math does not wait for it).
  auto load_blk = [&]() {
    if (cur.t0 >= ntok) return;
    const int ka = cur.sub * kSubKeys + (threadIdx.x / kSegs) * kPasses;
    cur.blk = ka <= cur.run_last ? __ldg(p.block_table + int64_t(s_seq[cur.t0]) * p.bt_s0 +
                                         (ka >> p.block_shift))
                                 : 0;
  };
  load_blk();
  // Issues the copies of the cursor's sub-tile (if any is left) and advances it.
  auto issue_next = [&]() {
    if (cur.t0 >= ntok) return;
    const int q = cur.q, slot = q % kStages;
    if (q >= kStages) ld::mbar_wait(empty_bar + 8 * slot, ((q / kStages) - 1) & 1);
    const int32_t* blocks = p.block_table + int64_t(s_seq[cur.t0]) * p.bt_s0;
    const uint32_t kd = k_s + slot * kTile, vd = v_s + slot * kTile;
    // This thread's kPasses consecutive keys lie in one cache block (blocks of at least kPasses
    // keys): one table read (load_blk, a sub-tile ago), then one row stride per key.
    const int ka = cur.sub * kSubKeys + (threadIdx.x / kSegs) * kPasses;
    if ((1 << p.block_shift) >= kPasses) {
      const int64_t off0 = ka <= cur.run_last ? int64_t(cur.blk) * p.c_s0 +
                                                    int64_t(ka & mask) * p.c_s1 + head_off + seg * 8
                                              : 0;
      if (ka + kPasses - 1 <= cur.run_last) {  // every key visible: no selects
#pragma unroll
        for (int pass = 0; pass < kPasses; ++pass) {
          const int64_t off = off0 + pass * p.c_s1;
          const uint32_t dst = pw_swz(ka - cur.sub * kSubKeys + pass, seg);
          cp_async16_s(kd + dst, p.k_cache + off, 16);
          cp_async16_s(vd + dst, p.v_cache + off, 16);
        }
      } else {
#pragma unroll
        for (int pass = 0; pass < kPasses; ++pass) {
          const bool valid = ka + pass <= cur.run_last;
          const int64_t off = valid ? off0 + pass * p.c_s1 : 0;
          const uint32_t dst = pw_swz(ka - cur.sub * kSubKeys + pass, seg);
          cp_async16_s(kd + dst, p.k_cache + off, valid ? 16 : 0);
          cp_async16_s(vd + dst, p.v_cache + off, valid ? 16 : 0);
        }
      }
    } else {  // blocks shorter than kPasses keys: a table read per key
#pragma unroll
      for (int pass = 0; pass < kPasses; ++pass) {
        const int kl = threadIdx.x / kSegs + pass * kKeysPerPass, key = cur.sub * kSubKeys + kl;
        const bool valid = key <= cur.run_last;
        const int64_t off = valid ? int64_t(__ldg(blocks + (key >> p.block_shift))) * p.c_s0 +
                                        int64_t(key & mask) * p.c_s1 + head_off + seg * 8
                                  : 0;
        const uint32_t dst = pw_swz(kl, seg);
        cp_async16_s(kd + dst, p.k_cache + off, valid ? 16 : 0);
        cp_async16_s(vd + dst, p.v_cache + off, valid ? 16 : 0);
      }
    }
    cp_async_mbar_arrive(full_bar + 8 * slot);
    ++cur.q;
    if (++cur.sub > cur.run_last / kSubKeys) {
      cur.sub = 0;
      cur.t0 = cur.t1;
      if (cur.t0 < ntok) run_end(cur.t0, cur.t1, cur.run_last);
    }
    load_blk();
  };
#pragma unroll 1
  for (int i = 0; i < kPwLead; ++i) issue_next();

  // ---- warpgroup c: rows [64 c, 64 c + 64) of the CTA ----
  const int nrows = ntok * p.group;
  int tl[2];
  const __nv_bfloat16* qrow[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = 64 * c + warp * 16 + g + 8 * h;
    tl[h] = r < nrows ? r / p.group : -1;
    qrow[h] = tl[h] < 0 ? nullptr
                        : p.q + int64_t(m0 + tl[h]) * p.q_s0 +
                              int64_t(kvh * p.group + r % p.group) * p.q_s1;
  }
  uint32_t qf[DH / 16][4];  // the A operand of S = Q K^T, in registers
  load_q_frags<DH>(qf, qrow[0], qrow[1]);
  // The running partial, parked in shared memory ([field][thread]): starts empty.
  float* park = park_all + c * kParkFloats;
#pragma unroll
  for (int n = 0; n < DH / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) park[(n * 4 + e) * 128 + wtid] = 0.0f;
  park[(DH / 2 + 0) * 128 + wtid] = -INFINITY;
  park[(DH / 2 + 1) * 128 + wtid] = -INFINITY;
  park[(DH / 2 + 2) * 128 + wtid] = 0.0f;
  park[(DH / 2 + 3) * 128 + wtid] = 0.0f;

  // Done with ring index r: this warp releases its slot, then the thread issues its copies of
  // the sub-tile kPwLead further (that waits for both warpgroups to release r + kPwLead - kStages,
  // so the warpgroups drift at most kStages - kPwLead sub-tiles apart).
  auto retire = [&](int r) {
    __syncwarp();
    if (lane == 0) ld::mbar_arrive(empty_bar + 8 * (r % kStages));
    issue_next();
  };
  // Issues S = Q K^T for the sub-tile in ring slot `slot` into s (one wgmma group).
  auto issue_scores = [&](int slot, float(&s)[kSubKeys / 8][4]) {
#pragma unroll
    for (int n = 0; n < kSubKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
    const uint32_t kb = k_s + slot * kTile;
    ld::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < DH / 16; ++kk)
      wgmma_rs_n64(s, qf[kk], ld::sw128_desc(kb + (kk >> 2) * 8192 + (kk & 3) * 32));
    ld::wgmma_commit();
  };
  // Issues O = P V (P packed in a) for the sub-tile in ring slot `slot` into o (one group).
  auto issue_pv = [&](int slot, const uint32_t(&a)[kSubKeys / 16][4], float(&o)[DH / 8][4]) {
#pragma unroll
    for (int n = 0; n < DH / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    ld::wgmma_fence();
#pragma unroll
    for (int j = 0; j < kSubKeys / 16; ++j)
      pw_wgmma_pv<DH>(o, a[j], mn_sw128_desc(v_s + slot * kTile + j * 2048, 8192));
    ld::wgmma_commit();
  };
  // subtile_softmax on s (the m and l of the sub-tile's partial), P packed to bf16 into a. When
  // the lane's two rows see every key of the sub-tile, the same function with last = INT_MAX, so
  // that the mask's compare and select (which would keep every value) fold away. The row max is
  // the tree form (kTreeMax: the same value, a 4-deep instead of a 16-long dependency chain;
  // 1.0-1.2% faster at 4k/16k, docs/notes/cuda_ops.md "session 5").
  auto softmax = [&](float(&s)[kSubKeys / 8][4], int key0, const int(&last)[2], float(&m)[2],
                     float(&l)[2], uint32_t(&a)[kSubKeys / 16][4]) {
    Partial<DH> sp;  // only m and l are kept: P V goes to its own accumulator
    constexpr int kAll[2] = {INT_MAX, INT_MAX};
    if (key0 + kSubKeys - 1 <= min(last[0], last[1]))
      subtile_softmax<DH, true>(s, key0, kAll, p.scale_log2, sp);
    else
      subtile_softmax<DH, true>(s, key0, last, p.scale_log2, sp);
    m[0] = sp.m[0], m[1] = sp.m[1], l[0] = sp.l[0], l[1] = sp.l[1];
#pragma unroll
    for (int j = 0; j < kSubKeys / 16; ++j) subtile_pack_p(s, j, a[j]);
  };
  Partial<DH> chunk;
  // chunk (+)= sub-tile i (partial sm, sl, o), exactly as merge_partial on the subtile_finish-ed
  // partial; when the chunk is done (i is its last sub-tile, or `last_one`: its later sub-tiles
  // are empty for every row), running (+)= chunk in shared memory.
  auto merge_sub = [&](int i, bool last_one, const float(&sm)[2], const float(&sl)[2],
                       const float(&o)[DH / 8][4]) {
    // The first of a chunk is a move (merging into the empty chunk takes b).
    if (i % kSubTiles == 0 || kFlat) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const bool empty = sm[h] == -INFINITY;  // subtile_finish
        chunk.m[h] = sm[h];
        chunk.l[h] = empty ? 0.0f : sl[h];
#pragma unroll
        for (int n = 0; n < DH / 8; ++n) {
          chunk.o[n][2 * h] = empty ? 0.0f : o[n][2 * h];
          chunk.o[n][2 * h + 1] = empty ? 0.0f : o[n][2 * h + 1];
        }
      }
    } else {
      // (An empty sub-tile row gives mode 0, which ignores b: subtile_finish is moot here.)
      float m[2], fa[2], fb[2];
      int mode[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        merge_coeffs(chunk.m[h], sm[h], m[h], fa[h], fb[h], mode[h]);
        chunk.l[h] = merge_value(chunk.l[h], sl[h], fa[h], fb[h], mode[h]);
        chunk.m[h] = m[h];
      }
      if (mode[0] == 2 && mode[1] == 2) {  // the common case, without the selects
#pragma unroll
        for (int n = 0; n < DH / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            chunk.o[n][e] =
                __fadd_rn(__fmul_rn(chunk.o[n][e], fa[e >> 1]), __fmul_rn(o[n][e], fb[e >> 1]));
      } else {
#pragma unroll
        for (int n = 0; n < DH / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            chunk.o[n][e] =
                merge_value(chunk.o[n][e], o[n][e], fa[e >> 1], fb[e >> 1], mode[e >> 1]);
      }
    }
    if (kFlat || i % kSubTiles == kSubTiles - 1 || last_one) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float m, fa, fb;
        int mode;
        merge_coeffs(park[(DH / 2 + h) * 128 + wtid], chunk.m[h], m, fa, fb, mode);
        float& al = park[(DH / 2 + 2 + h) * 128 + wtid];
        al = merge_value(al, chunk.l[h], fa, fb, mode);
        // merge_value's three cases, chosen once per row: 2 combine, 1 take the chunk, 0 keep.
        if (mode == 2) {
#pragma unroll
          for (int n = 0; n < DH / 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float& ao = park[(n * 4 + 2 * h + e) * 128 + wtid];
              ao = __fadd_rn(__fmul_rn(ao, fa), __fmul_rn(chunk.o[n][2 * h + e], fb));
            }
        } else if (mode == 1) {
#pragma unroll
          for (int n = 0; n < DH / 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e)
              park[(n * 4 + 2 * h + e) * 128 + wtid] = chunk.o[n][2 * h + e];
        }
        park[(DH / 2 + h) * 128 + wtid] = m;
      }
    }
  };

  int it = 0;  // ring index of the run's first sub-tile
  for (int t0 = 0; t0 < ntok;) {
    int t1, run_last;
    run_end(t0, t1, run_last);
    const int last[2] = {tl[0] >= t0 && tl[0] < t1 ? s_pos[tl[0]] : -1,
                         tl[1] >= t0 && tl[1] < t1 ? s_pos[tl[1]] : -1};
    // The last key any row of this warpgroup sees in this run (-1: none): sub-tiles past it are
    // the empty partial for every row (identity), skipped.
    int wg_last = -1;
    {
      const int ta = max(t0, (64 * c) / p.group), tb = min(t1, (64 * c + 63) / p.group + 1);
      for (int tt = ta; tt < tb; ++tt) wg_last = max(wg_last, s_pos[tt]);
    }
    const int nsub = run_last / kSubKeys + 1, ncomp = wg_last < 0 ? 0 : wg_last / kSubKeys + 1;
    // Pipeline over the computed sub-tiles i: S(i + 1) runs on the tensor cores while sub-tile
    // i is merged (the other warpgroup fills the gaps). No wgmma is issued under a branch (ptxas
    // then serialises every wgmma of the kernel, C7518): the S after the last sub-tile, and the
    // one before the first when the warpgroup computes none, still run, on a slot they may read
    // while it is refilled, and their result is dropped.
    float s[kSubKeys / 8][4];
    if (ncomp > 0) ld::mbar_wait(full_bar + 8 * (it % kStages), (it / kStages) & 1);
    fence_proxy_async_smem();  // the cp.async writes (generic proxy) before the wgmma reads
    issue_scores(it % kStages, s);
#pragma unroll 1
    for (int i = 0; i < ncomp; ++i) {
      const int slot = (it + i) % kStages, nslot = (it + i + 1) % kStages;
      const bool next = i + 1 < ncomp;
      float sm[2], sl[2];
      uint32_t a[kSubKeys / 16][4];
      ld::wgmma_wait<0>();  // S(i)
      softmax(s, i * kSubKeys, last, sm, sl, a);
      float o[DH / 8][4];
      issue_pv(slot, a, o);
      if (next) ld::mbar_wait(full_bar + 8 * nslot, ((it + i + 1) / kStages) & 1);
      fence_proxy_async_smem();
      issue_scores(next ? nslot : slot, s);
      ld::wgmma_wait<1>();  // P V(i) done; S(i + 1) may still run
      retire(it + i);
      merge_sub(i, !next, sm, sl, o);
    }
    ld::wgmma_wait<0>();
    // The sub-tiles past this warpgroup's last key: released unread (after they landed, so that
    // no warp runs a ring round ahead).
#pragma unroll 1
    for (int i = ncomp; i < nsub; ++i) {
      ld::mbar_wait(full_bar + 8 * ((it + i) % kStages), ((it + i) / kStages) & 1);
      retire(it + i);
    }
    it += nsub;
    t0 = t1;
  }
  cp_async_wait_all();

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (tl[h] < 0) continue;
    const int r = 64 * c + warp * 16 + g + 8 * h;
    const float l = park[(DH / 2 + 2 + h) * 128 + wtid];
    __nv_bfloat16* o =
        p.out + int64_t(m0 + tl[h]) * p.o_s0 + int64_t(kvh * p.group + r % p.group) * p.o_s1;
#pragma unroll
    for (int n = 0; n < DH / 8; ++n) {
      o[n * 8 + 2 * t] =
          __float2bfloat16_rn(__fdiv_rn(park[(n * 4 + 2 * h) * 128 + wtid], l));
      o[n * 8 + 2 * t + 1] =
          __float2bfloat16_rn(__fdiv_rn(park[(n * 4 + 2 * h + 1) * 128 + wtid], l));
    }
  }
#endif
}

}  // namespace bitexact::ops::cuda::attn
