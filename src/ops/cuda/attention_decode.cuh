// The decode grid (batch-invariant mode). Every warp streams its sub-tiles of one (token, kv
// head) through a private ring of 16-key K/V pieces in shared memory (cp.async or TMA bulk
// copies, refilled as soon as a piece is consumed) and computes each sub-tile exactly as
// subtile_partial does (the four steps of attention_tile.cuh). Two shapes, picked by the host
// for speed only:
//  - warp-chunk: a warp takes whole chunks and folds each in registers, ((s0 (+) s1) (+) s2)
//    (+) s3; no synchronisation between warps (large batches);
//  - CTA-chunk: the 4 warps of a CTA take the 4 sub-tiles of a chunk and merge them in order
//    through shared memory (small batches: 4x the parallelism per chunk).
// A CTA may serve several kv heads of one token (DecodeArgs::hpc: the 8-warp variant's warps
// read the same keys of the 8 heads, whose rows interleave in a cache block), and a grid may end
// with a "tail" of CTA-chunk CTAs taking the last chunks of every token one at a time, so that
// the last CTAs to run are short-lived (DecodeArgs::tail_k).
// Chunk partials go to the workspace and merge_chunks_kernel, launched next, folds them left to
// right with the one merge function (fold_kernel, the faster option measured), or the last CTA
// of a (token, kv head) to arrive does (integer counter, no floating-point atomics); a token with
// one chunk writes its output directly. So the bits are those of split_kernel +
// merge_chunks_kernel and of the fused grid, whatever shape, ring depth or copy engine runs.
#pragma once

#include "ops/cuda/attention_kernels.cuh"

namespace bitexact::ops::cuda::attn {

struct DecodeArgs {
  int spw;            // warp-chunk mode: sub-tiles per warp (a multiple of 4)
  int cpc;            // CTA-chunk mode (> 0): chunks per CTA; 0: warp-chunk mode
  int ctas_per_head;  // CTAs per (token, head group); blockIdx.x = hg + (hkv / hpc) * (cta + cpt *
                      // token)
  int hpc;            // kv heads per CTA (head group hg = kv heads [hg * hpc, hg * hpc + hpc));
                      // warp-chunk: warp w takes head w % hpc; CTA-chunk: 4 warps per head
  int max_units;      // chunk slots per (token, q head) in part_o / part_ml
  int tab_cap;        // block-table entries staged per warp
  int fold_kernel;    // 1: leave the fold to merge_chunks_kernel; 0: the last CTA to arrive folds
  // Tail (speed only: the last CTAs to run take a chunk each, 4 warps per chunk, so the grid's
  // tail is one chunk's latency, not four): CTAs [0, main_ctas) take chunks [0, tail_k) in the
  // shape above; CTAs from main_ctas take chunks [tail_k, tail_k + tail_ctas) in the CTA-chunk
  // shape with one chunk per CTA and tail_hpc heads per CTA, blockIdx.x - main_ctas =
  // hg + (hkv / tail_hpc) * (c - tail_k + tail_ctas * token). No tail: main_ctas = the grid,
  // tail_k = max_units.
  int main_ctas, tail_k, tail_ctas, tail_hpc;
  int* counters;  // [M * hkv] arrivals; zero before and after every launch
};

// ---- TMA (bulk copy + mbarrier) helpers ----
__device__ __forceinline__ void mbar_init(uint64_t* bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void bulk_g2s(void* dst, const void* src, uint32_t bytes,
                                         uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::
          "r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}
// Orders this thread's generic-proxy shared accesses (ldmatrix reads of a ring slot) before
// later async-proxy writes (the bulk copy that refills the slot).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Shared memory of decode_kernel: per warp kRing piece slots, then per warp tab_cap table
// entries, then per warp kRing mbarriers (TMA), then (CTA-chunk mode) per warp a parking area.
template <int DH, int kWarps, int kRing>
constexpr int decode_ring_bytes() {
  return kWarps * kRing * 16 * (DH + kPad) * 2;
}
inline int decode_smem_bytes(int ring_bytes, int warps, int ring, int tab_cap, int park_bytes) {
  const int tab = (warps * tab_cap * 4 + 15) / 16 * 16;
  return ring_bytes + tab + warps * ring * 8 + park_bytes;
}

// Left fold of the chunk partials of (token m, kv head kvh) into out, by all threads of the CTA
// (the arithmetic of merge_chunks_kernel: acc = empty, acc (+)= chunk c for c = 0, 1, ...).
// Batches of chunks are staged into shared memory with one round of cp.async copies; threads
// r < group run the per-row chain (m, l and the merge coefficients) once per chunk; then every
// thread folds its output elements with those coefficients, reading shared memory only.
template <int DH, int kThreads>
__device__ __forceinline__ void decode_final_merge(const Params& p, const DecodeArgs& a, int m,
                                                   int kvh, int units, unsigned char* smem,
                                                   int smem_bytes) {
  constexpr int kRows = 16, kE = kRows * DH / kThreads;  // most elements a thread folds
  const int tid = threadIdx.x, group = p.group, nelem = group * DH;
  // Per chunk: o [group][DH], then m, l, fa, fb, mode for 16 rows.
  const int ub_max = min(64, smem_bytes / (nelem * 4 + kRows * 5 * 4));
  float* s_o = reinterpret_cast<float*>(smem);
  float* s_m = s_o + ub_max * nelem;
  float* s_l = s_m + ub_max * kRows;
  float* s_fa = s_l + ub_max * kRows;
  float* s_fb = s_fa + ub_max * kRows;
  int* s_md = reinterpret_cast<int*>(s_fb + ub_max * kRows);
  const int64_t row0 = int64_t(m) * p.hq + int64_t(kvh) * group;  // slot row of q head kvh*G
  float am = -INFINITY, al = 0.0f;                                // row chain (thread r < group)
  float ao[kE];
#pragma unroll
  for (int k = 0; k < kE; ++k) ao[k] = 0.0f;
#pragma unroll 1
  for (int ub = 0; ub < units; ub += ub_max) {
    const int nb = min(ub_max, units - ub);
    __syncthreads();          // the previous batch is consumed
    const int segs = DH / 4;  // 16-byte copies per row of o
    for (int i = tid; i < nb * group * segs; i += kThreads) {
      const int u = i / (group * segs), rest = i % (group * segs), r = rest / segs,
                sg = rest % segs;
      cp_async16(s_o + (u * group + r) * DH + sg * 4,
                 p.part_o + ((row0 + r) * a.max_units + ub + u) * DH + sg * 4, 16);
    }
    cp_async_commit();
    for (int i = tid; i < nb * group; i += kThreads) {
      const int u = i / group, r = i % group;
      const float2 ml =
          __ldcg(reinterpret_cast<const float2*>(p.part_ml) + (row0 + r) * a.max_units + ub + u);
      s_m[u * kRows + r] = ml.x;
      s_l[u * kRows + r] = ml.y;
    }
    cp_async_wait<0>();
    __syncthreads();
    if (tid < group) {
#pragma unroll 4
      for (int u = 0; u < nb; ++u) {
        const int c = u * kRows + tid;
        float mm, fa, fb;
        int mode;
        merge_coeffs(am, s_m[c], mm, fa, fb, mode);
        al = merge_value(al, s_l[c], fa, fb, mode);
        am = mm;
        s_fa[c] = fa, s_fb[c] = fb, s_md[c] = mode;
      }
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      const int e = k * kThreads + tid;
      if (e < nelem) {
        const int r = e / DH;
#pragma unroll 4
        for (int u = 0; u < nb; ++u) {
          const int c = u * kRows + r;
          ao[k] = merge_value(ao[k], s_o[u * nelem + e], s_fa[c], s_fb[c], s_md[c]);
        }
      }
    }
  }
  __syncthreads();
  if (tid < group) s_l[tid] = al;  // the row sums, for the division
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kE; ++k) {
    const int e = k * kThreads + tid;
    if (e < nelem) {
      const int r = e / DH, d = e % DH, h = kvh * group + r;
      p.out[int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1 + d] =
          __float2bfloat16_rn(__fdiv_rn(ao[k], s_l[r]));
    }
  }
}

// Writes this lane's rows of a chunk partial (slot `unit`), or, when the token has one chunk
// only, the output o / l.
template <int DH>
__device__ __forceinline__ void decode_emit(const Params& p, const DecodeArgs& a,
                                            const Partial<DH>& u, int m, int kvh, int unit,
                                            bool single) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = g + 8 * hh;
    if (r >= p.group) continue;
    const int h = kvh * p.group + r;
    if (single) {
      __nv_bfloat16* o = p.out + int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1;
#pragma unroll
      for (int n = 0; n < DH / 8; ++n) {
        o[n * 8 + 2 * t] = __float2bfloat16_rn(__fdiv_rn(u.o[n][2 * hh], u.l[hh]));
        o[n * 8 + 2 * t + 1] = __float2bfloat16_rn(__fdiv_rn(u.o[n][2 * hh + 1], u.l[hh]));
      }
    } else {
      const int64_t slot = (int64_t(m) * p.hq + h) * a.max_units + unit;
      float* o = p.part_o + slot * DH;
#pragma unroll
      for (int n = 0; n < DH / 8; ++n)
        __stcg(reinterpret_cast<float2*>(o + n * 8 + 2 * t),
               make_float2(u.o[n][2 * hh], u.o[n][2 * hh + 1]));
      if (t == 0)
        __stcg(reinterpret_cast<float2*>(p.part_ml) + slot, make_float2(u.m[hh], u.l[hh]));
    }
  }
}

// CTA-chunk mode: warp w parks its sub-tile partial for merge_parked_store in an area of
// park_floats(group) floats: o of rows < group at pitch DH + 8 (against bank conflicts), then
// m[16], l[16].
template <int DH>
__host__ __device__ constexpr int park_floats(int group) {
  return group * (DH + 8) + 32;
}
template <int DH>
__device__ __forceinline__ void park_rows(float* po, const Partial<DH>& s, int group) {
  constexpr int kOPitch = DH + 8;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = g + 8 * hh;
    if (r >= group) continue;
#pragma unroll
    for (int n = 0; n < DH / 8; ++n)
      *reinterpret_cast<float2*>(po + r * kOPitch + n * 8 + 2 * t) =
          make_float2(s.o[n][2 * hh], s.o[n][2 * hh + 1]);
    if (t == 0) po[group * kOPitch + r] = s.m[hh], po[group * kOPitch + 16 + r] = s.l[hh];
  }
}

// The chunk partial ((w0 (+) w1) (+) w2) (+) w3 over the parked partials of the chunk's `nw`
// sub-tiles (later ones are empty: identities), elementwise by the kThreads threads tid = 0, 1,
// ... as in merge_warps_store; stored as chunk partial `unit`, or as the output when `single`.
template <int DH, int kThreads>
__device__ __forceinline__ void merge_parked_store(const Params& p, const DecodeArgs& a,
                                                   const float* park, int nw, int m, int kvh,
                                                   int unit, bool single, int tid) {
  constexpr int kOPitch = DH + 8;
  const int group = p.group, park_stride = park_floats<DH>(group), ml = group * kOPitch;
  for (int i = tid; i < group * DH; i += kThreads) {
    const int r = i / DH, d = i % DH;
    const float* w0 = park;
    float om = w0[ml + r], ol = w0[ml + 16 + r];
    float ov = w0[r * kOPitch + d];
    for (int w = 1; w < nw; ++w) {
      const float* pw = park + w * park_stride;
      float mm, fa, fb;
      int mode;
      merge_coeffs(om, pw[ml + r], mm, fa, fb, mode);
      ol = merge_value(ol, pw[ml + 16 + r], fa, fb, mode);
      ov = merge_value(ov, pw[r * kOPitch + d], fa, fb, mode);
      om = mm;
    }
    const int h = kvh * group + r;
    if (single) {
      p.out[int64_t(m) * p.o_s0 + int64_t(h) * p.o_s1 + d] = __float2bfloat16_rn(__fdiv_rn(ov, ol));
    } else {
      const int64_t slot = (int64_t(m) * p.hq + h) * a.max_units + unit;
      __stcg(p.part_o + slot * DH + d, ov);
      if (d == 0) __stcg(reinterpret_cast<float2*>(p.part_ml) + slot, make_float2(om, ol));
    }
  }
}

// kMinBlocks > 1 caps the registers so that many CTAs fit an SM (speed only).
// A CTA serves the hpc kv heads of one head group (a.hpc; 1: one kv head). Two modes (a.cpc):
// warp-chunk (cpc = 0): warp w of CTA cta serves kv head w % hpc and takes its sub-tiles
// [u0, u0 + spw), u0 = (cta * kWarps / hpc + w / hpc) * spw, spw a multiple of 4, and folds each
// chunk in registers (hpc > 1: the warps of one CTA read the same keys of neighbouring heads, so
// a cache block's interleaved rows are read together; speed only).
// CTA-chunk (cpc > 0): the CTA takes chunks [cta * cpc, cta * cpc + cpc); warps 4i .. 4i + 3
// serve kv head i of the group (i < hpc; the others idle), warp 4i + j sub-tile j of each chunk,
// and the four partials of a chunk are merged through shared memory by those 4 warps.
template <int DH, int kWarps, int kRing, bool kTma, int kMinBlocks = 1>
__global__ void __launch_bounds__(32 * kWarps, kMinBlocks) decode_kernel(Params p, DecodeArgs a) {
  pdl_wait();  // PDL (pdl.cuh): nothing of an earlier kernel is read before this
  pdl_launch_dependents();
  static_assert(kRing >= 4, "S = Q K^T needs the four K pieces of a sub-tile in the ring");
  constexpr int kPitch = DH + kPad, kPiece = 16 * kPitch;  // bf16 elements per ring slot
  constexpr int kRingBytes = decode_ring_bytes<DH, kWarps, kRing>();
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ int s_last;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  __nv_bfloat16* ring = reinterpret_cast<__nv_bfloat16*>(smem_raw) + warp * kRing * kPiece;
  const int tab_bytes = (kWarps * a.tab_cap * 4 + 15) / 16 * 16;
  int* tab = reinterpret_cast<int*>(smem_raw + kRingBytes) + warp * a.tab_cap;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem_raw + kRingBytes + tab_bytes) + warp * kRing;
  float* park = reinterpret_cast<float*>(smem_raw + kRingBytes + tab_bytes + kWarps * kRing * 8);

  const bool tail = int(blockIdx.x) >= a.main_ctas;  // (uniform over the CTA)
  const int hpc = tail ? a.tail_hpc : a.hpc, bid = tail ? blockIdx.x - a.main_ctas : blockIdx.x;
  const int cpt = tail ? a.tail_ctas : a.ctas_per_head;
  const int hg = bid % (p.hkv / hpc), rest = bid / (p.hkv / hpc);
  const int cta = rest % cpt, m = rest / cpt;
  const int pos = p.token_pos[m], seq = p.token_seq[m];
  const int nsub = pos / kSubKeys + 1, nchunks = (nsub + kSubTiles - 1) / kSubTiles;
  const bool cta_chunk = tail || a.cpc > 0;
  const int cpc = tail ? 1 : a.cpc;
  // This region's chunks end at cend, its sub-tiles at send (the main region stops at tail_k).
  const int cend = tail ? nchunks : min(nchunks, a.tail_k), send = min(nsub, 4 * cend);
  // This warp's kv head; this CTA's sub-tiles, and this warp's: ucount sub-tiles ubase,
  // ubase + ustride, ...
  int kvh, ubase, ustride, ucount, c0 = 0, c1 = 0, ctas;
  bool head_active = true;  // CTA-chunk: this warp's group of 4 serves a kv head
  if (cta_chunk) {
    c0 = (tail ? a.tail_k : 0) + cta * cpc, c1 = min(c0 + cpc, cend);
    if (c0 >= cend) return;  // no keys here (uniform over the CTA)
    head_active = (warp >> 2) < hpc;
    kvh = hg * hpc + (head_active ? warp >> 2 : 0);
    ubase = 4 * c0 + (warp & 3), ustride = 4;
    ucount = head_active && ubase < nsub ? min(c1 - c0, (nsub - ubase + 3) / 4) : 0;
    ctas = (nchunks + cpc - 1) / cpc;  // (the last-CTA fold runs without a tail only)
  } else {
    const int wph = kWarps / hpc, cta_sub = wph * a.spw;  // warps per head, sub-tiles per head
    if (cta * cta_sub >= send) return;
    kvh = hg * hpc + warp % hpc;
    ubase = (cta * wph + warp / hpc) * a.spw, ustride = 1;
    ucount = max(0, min(a.spw, send - ubase));
    ctas = (nsub + cta_sub - 1) / cta_sub;
  }
  const int64_t head_off = int64_t(kvh) * p.c_s2;
  const int shift = p.block_shift, mask = (1 << shift) - 1;
  const int tb0 = (ubase * kSubKeys) >> shift;  // first staged table entry (when ucount > 0)
  uint32_t qf[DH / 16][4];
  const int last[2] = {g < p.group ? pos : -1, g + 8 < p.group ? pos : -1};
  const int npieces = 8 * ucount;
  if (ucount > 0) {
    // q first: its loads fly while the block table is fetched and the first pieces are issued.
    const __nv_bfloat16* qrow = p.q + int64_t(m) * p.q_s0 + int64_t(kvh) * p.group * p.q_s1;
    load_q_frags<DH>(qf, g < p.group ? qrow + g * p.q_s1 : nullptr,
                     g + 8 < p.group ? qrow + (g + 8) * p.q_s1 : nullptr);
    const int ulast = ubase + (ucount - 1) * ustride;
    const int nblk = (min(ulast * kSubKeys + kSubKeys - 1, pos) >> shift) - tb0 + 1;
    const int32_t* blocks = p.block_table + int64_t(seq) * p.bt_s0;
    for (int i = lane; i < nblk; i += 32) tab[i] = blocks[tb0 + i];
    if constexpr (kTma) {
      if (lane < kRing) mbar_init(bars + lane);
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncwarp();
  }

  // Piece q of this warp: sub-tile ubase + (q / 8) * ustride; K pieces j = 0..3, then V pieces.
  auto slot = [&](int q) { return ring + (q % kRing) * kPiece; };
  auto issue = [&](int q) {
    if (q < npieces) {
      const __nv_bfloat16* cache = (q & 4) ? p.v_cache : p.k_cache;
      const int key0 = (ubase + (q >> 3) * ustride) * kSubKeys + (q & 3) * 16;
      __nv_bfloat16* dst = slot(q);
      if constexpr (kTma) {
        uint64_t* bar = bars + q % kRing;
        const int valid = max(0, min(16, pos - key0 + 1));
        fence_proxy_async();
        if (lane == 0) mbar_arrive_expect_tx(bar, uint32_t(valid * DH * 2));
        __syncwarp();
        if (lane < valid) {
          const int key = key0 + lane;
          const __nv_bfloat16* src = cache + int64_t(tab[(key >> shift) - tb0]) * p.c_s0 +
                                     int64_t(key & mask) * p.c_s1 + head_off;
          bulk_g2s(dst + lane * kPitch, src, DH * 2, bar);
        } else if (lane < 16) {
#pragma unroll
          for (int c = 0; c < DH / 8; ++c)
            *reinterpret_cast<uint4*>(dst + lane * kPitch + c * 8) = make_uint4(0, 0, 0, 0);
        }
      } else {
        load_keys<DH, 16, 32>(dst, cache, tab + ((key0 >> shift) - tb0), shift, p.c_s0, p.c_s1,
                              head_off, key0, pos, lane);
      }
    }
    if constexpr (!kTma) cp_async_commit();
  };
  // wait_k: pieces q .. q + 3 have landed; wait_one: piece q has landed. Invariant (cp.async):
  // pieces issued = next piece consumed + kRing, one group per piece.
  auto wait_k = [&](int q) {
    if constexpr (kTma) {
#pragma unroll
      for (int j = 0; j < 4; ++j) mbar_wait(bars + (q + j) % kRing, ((q + j) / kRing) & 1);
    } else {
      cp_async_wait<kRing - 4>();
    }
    __syncwarp();
  };
  auto wait_one = [&](int q) {
    if constexpr (kTma)
      mbar_wait(bars + q % kRing, (q / kRing) & 1);
    else
      cp_async_wait<kRing - 1>();
    __syncwarp();
  };
  // The partial of this warp's k-th sub-tile, its pieces streamed through the ring.
  auto subtile = [&](int k, Partial<DH>& sp) {
    const int q = 8 * k, u = ubase + k * ustride;
    float s[kSubKeys / 8][4];
    wait_k(q);
    {
      const __nv_bfloat16* const kp[4] = {slot(q), slot(q + 1), slot(q + 2), slot(q + 3)};
      subtile_scores<DH>(qf, kp, s);
    }
    __syncwarp();  // every lane is done reading the K slots
#pragma unroll 1
    for (int j = 0; j < 4; ++j) issue(q + j + kRing);
    subtile_softmax<DH>(s, u * kSubKeys, last, p.scale_log2, sp);
    uint32_t pa[4][4];  // P as bf16 A fragments: frees the f32 scores before P V
#pragma unroll
    for (int j = 0; j < 4; ++j) subtile_pack_p(s, j, pa[j]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      wait_one(q + 4 + j);
      subtile_pv_piece<DH>(pa[j], slot(q + 4 + j), sp);
      __syncwarp();  // every lane is done reading this V slot
      issue(q + 4 + j + kRing);
    }
    subtile_finish<DH>(sp);
  };

  if (ucount > 0) {
#pragma unroll 1
    for (int q = 0; q < kRing; ++q) issue(q);
  }
  if (cta_chunk) {
    float* my_park = park + warp * park_floats<DH>(p.group);
#pragma unroll 1
    for (int c = c0; c < c1; ++c) {
      const int k = c - c0;
      if (k < ucount) {
        Partial<DH> sp;
        subtile(k, sp);
        park_rows<DH>(my_park, sp, p.group);
      }
      __syncthreads();  // the chunk's partials are parked
      if (head_active)  // the 4 warps of this kv head merge its 4 parked partials
        merge_parked_store<DH, 128>(p, a, park + (warp & ~3) * park_floats<DH>(p.group),
                                    min(4, nsub - 4 * c), m, kvh, c, nchunks == 1,
                                    threadIdx.x & 127);
      __syncthreads();  // the parked partials are read
    }
  } else if (ucount > 0) {
    Partial<DH> acc;  // the chunk being folded
#pragma unroll 1
    for (int k = 0; k < ucount; ++k) {
      const int u = ubase + k;
      Partial<DH> sp;
      subtile(k, sp);
      if ((u & 3) == 0)
        acc = sp;  // == empty (+) s0, bit for bit
      else
        merge_partial<DH>(acc, sp);
      if ((u & 3) == 3 || k == ucount - 1) decode_emit<DH>(p, a, acc, m, kvh, u >> 2, nchunks == 1);
    }
  }
  if constexpr (!kTma) cp_async_wait<0>();
  // One chunk: it was the output. fold_kernel: merge_chunks_kernel folds the workspace next
  // (always when hpc > 1: the fold below serves one kv head per CTA).
  if (nchunks == 1 || a.fold_kernel) return;  // (uniform over the CTA)

  // Every CTA's chunk partials are in the workspace; the last CTA of (m, kvh) to arrive folds.
  // The CTA barrier orders every thread's stores before thread 0's release (fence + counter);
  // the last CTA's thread 0 acquires (counter + fence) before the barrier that lets its threads
  // read (through L2: cp.async.cg / ld.cg), the pattern of a split-K semaphore.
  __syncthreads();
  if (ctas > 1) {
    if (threadIdx.x == 0) {
      int* cnt = a.counters + int64_t(m) * p.hkv + kvh;
      __threadfence();
      const int old = atomicAdd(cnt, 1);
      __threadfence();
      s_last = old == ctas - 1;
      if (old == ctas - 1) *cnt = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!s_last) return;
  }
  decode_final_merge<DH, 32 * kWarps>(p, a, m, kvh, nchunks, smem_raw, kRingBytes);
}

}  // namespace bitexact::ops::cuda::attn
