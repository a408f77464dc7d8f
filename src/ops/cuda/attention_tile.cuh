// The per-tile arithmetic of CUDA attention, shared by every attention kernel: one warp computes
// the partial (max, sum, out) of 16 query rows over one sub-tile of 64 keys with bf16 mma.sync
// (f32 accumulate), and partials are combined by merge_partial, the one merge function.
// Why this is batch-invariant: an MMA output row depends only on that row of A, so a query row's
// bits do not depend on which other rows share its tile; masked keys enter as exact zeros.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace bitexact::ops::cuda::attn {

constexpr int kSubKeys = 64;  // keys per sub-tile (one warp's unit of work)
constexpr int kSubTiles = 4;  // sub-tiles per kAttentionChunk (256 / 64)
constexpr int kPad = 8;       // bf16 elements of padding per smem row: conflict-free ldmatrix

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; src_bytes 0 writes zeros (keys past the last position).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// d += a * b for one m16n8k16 bf16 tile with f32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Loads the A fragments of 16 query rows (rows g and g+8 of this lane; a null row is zeros).
template <int DH>
__device__ __forceinline__ void load_q_frags(uint32_t (&qf)[DH / 16][4], const __nv_bfloat16* row_g,
                                             const __nv_bfloat16* row_g8) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int kk = 0; kk < DH / 16; ++kk) {
    const int c = kk * 16 + 2 * t;
    qf[kk][0] = row_g ? *reinterpret_cast<const uint32_t*>(row_g + c) : 0u;
    qf[kk][1] = row_g8 ? *reinterpret_cast<const uint32_t*>(row_g8 + c) : 0u;
    qf[kk][2] = row_g ? *reinterpret_cast<const uint32_t*>(row_g + c + 8) : 0u;
    qf[kk][3] = row_g8 ? *reinterpret_cast<const uint32_t*>(row_g8 + c + 8) : 0u;
  }
}

// A partial of this lane's two rows (g, g+8): max in the log2 domain, sum, and out elements
// o[n][0..1] (row g, dims 8n+2t, +1) and o[n][2..3] (row g+8). m = -inf means "no keys".
template <int DH>
struct Partial {
  float m[2];
  float l[2];
  float o[DH / 8][4];
  __device__ __forceinline__ void clear() {
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
#pragma unroll
    for (int n = 0; n < DH / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  }
};

// The one merge function: a := a (+) b, b being the later keys. An empty side is an exact
// identity (explicit select, never exp2(-inf - -inf)). Written with _rn intrinsics so that no
// call site can contract it into a different FMA.
__device__ __forceinline__ void merge_coeffs(float ma, float mb, float& m, float& fa, float& fb,
                                             int& mode) {
  mode = mb == -INFINITY ? 0 : (ma == -INFINITY ? 1 : 2);  // 0 keep a, 1 take b, 2 combine
  m = mode == 0 ? ma : (mode == 1 ? mb : fmaxf(ma, mb));
  fa = mode == 2 ? exp2f(__fsub_rn(ma, m)) : 1.0f;
  fb = mode == 2 ? exp2f(__fsub_rn(mb, m)) : 1.0f;
}
__device__ __forceinline__ float merge_value(float a, float b, float fa, float fb, int mode) {
  return mode == 0 ? a : (mode == 1 ? b : __fadd_rn(__fmul_rn(a, fa), __fmul_rn(b, fb)));
}

template <int DH>
__device__ __forceinline__ void merge_partial(Partial<DH>& a, const Partial<DH>& b) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float m, fa, fb;
    int mode;
    merge_coeffs(a.m[h], b.m[h], m, fa, fb, mode);
    a.l[h] = merge_value(a.l[h], b.l[h], fa, fb, mode);
#pragma unroll
    for (int n = 0; n < DH / 8; ++n) {
      a.o[n][2 * h] = merge_value(a.o[n][2 * h], b.o[n][2 * h], fa, fb, mode);
      a.o[n][2 * h + 1] = merge_value(a.o[n][2 * h + 1], b.o[n][2 * h + 1], fa, fb, mode);
    }
    a.m[h] = m;
  }
}

// The partial of one sub-tile is computed in four steps, shared by every kernel so that the
// instruction sequence (and so the bits) cannot drift between them:
//   subtile_scores:   S = Q K^T over head_dim in 16-wide steps, ascending (kk outer, keys inner);
//   subtile_softmax:  row max; p = exp2(s - max); the row sum adds the lane's 16 values in
//                     ascending key order, then lanes xor 1, xor 2;
//   subtile_pv_piece: O += P V for keys [16 j, 16 j + 16) (P rounded to bf16 by
//                     subtile_pack_p), called for j = 0, 1, 2, 3 in order;
//   subtile_finish:   a row with no visible key becomes the empty partial.
// K and V are addressed as four pieces of 16 key rows each (pitch DH + kPad), so a caller may
// keep them in any four shared-memory slots (the decode kernel's per-warp ring).
template <int DH>
__device__ __forceinline__ void subtile_scores(const uint32_t (&qf)[DH / 16][4],
                                               const __nv_bfloat16* const (&kp)[4],
                                               float (&s)[kSubKeys / 8][4]) {
  constexpr int kPitch = DH + kPad;
  const int lane = threadIdx.x & 31, mat = lane >> 3, mr = lane & 7;
#pragma unroll
  for (int n = 0; n < kSubKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < DH / 16; ++kk) {
#pragma unroll
    for (int n = 0; n < kSubKeys / 8; n += 2) {
      uint32_t b[4];
      ldmatrix_x4(b, kp[n / 2] + (mr + ((mat >> 1) << 3)) * kPitch + kk * 16 + ((mat & 1) << 3));
      mma_bf16(s[n], qf[kk], b[0], b[1]);
      mma_bf16(s[n + 1], qf[kk], b[2], b[3]);
    }
  }
}

// Scores -> probabilities in place; sets out.m, out.l and zeroes out.o (ready for P V).
// last[h]: the last key position row h may see (-1: none).
// kTreeMax: the row max as a balanced tree of fmaxf (4 deep instead of a 16-long chain), with the
// same -inf leaf. The same value: fmaxf is exact, ignores a NaN operand, and the max of a set
// does not depend on the order (only the sign of a zero max may, which never reaches the output:
// it enters only as s - max and merge_coeffs' differences, under exp2).
template <int DH, bool kTreeMax = false>
__device__ __forceinline__ void subtile_softmax(float (&s)[kSubKeys / 8][4], int key0,
                                                const int (&last)[2], float scale_log2,
                                                Partial<DH>& out) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < kSubKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = key0 + n * 8 + 2 * t + e;
        float v = __fmul_rn(s[n][2 * h + e], scale_log2);
        v = key <= last[h] ? v : -INFINITY;
        s[n][2 * h + e] = v;
        if constexpr (!kTreeMax) mx = fmaxf(mx, v);
      }
    }
    if constexpr (kTreeMax) {
      float m4[kSubKeys / 16];
#pragma unroll
      for (int j = 0; j < kSubKeys / 16; ++j)
        m4[j] = fmaxf(fmaxf(s[2 * j][2 * h], s[2 * j][2 * h + 1]),
                      fmaxf(s[2 * j + 1][2 * h], s[2 * j + 1][2 * h + 1]));
      mx = fmaxf(mx, fmaxf(fmaxf(m4[0], m4[1]), fmaxf(m4[2], m4[3])));
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kSubKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        // Branch-free: exp2(-inf - max) is exactly +0 for a masked key; a row with no visible
        // key (max = -inf) gets NaN here and is replaced by the empty partial in subtile_finish.
        const float p = exp2f(__fsub_rn(s[n][2 * h + e], mx));
        s[n][2 * h + e] = p;
        sum += p;
      }
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    out.m[h] = mx;
    out.l[h] = sum;
  }
#pragma unroll
  for (int n = 0; n < DH / 8; ++n) out.o[n][0] = out.o[n][1] = out.o[n][2] = out.o[n][3] = 0.0f;
}

// The A fragment (P rounded to bf16) of keys [16 j, 16 j + 16) of the sub-tile.
__device__ __forceinline__ void subtile_pack_p(const float (&s)[kSubKeys / 8][4], int j,
                                               uint32_t (&a)[4]) {
  a[0] = pack_bf16(s[2 * j][0], s[2 * j][1]);
  a[1] = pack_bf16(s[2 * j][2], s[2 * j][3]);
  a[2] = pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
  a[3] = pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
}

// O += P V over keys [16 j, 16 j + 16) of the sub-tile, a = subtile_pack_p(s, j); vp: those 16
// V rows (pitch DH + kPad).
template <int DH>
__device__ __forceinline__ void subtile_pv_piece(const uint32_t (&a)[4], const __nv_bfloat16* vp,
                                                 Partial<DH>& out) {
  constexpr int kPitch = DH + kPad;
  const int lane = threadIdx.x & 31, mat = lane >> 3, mr = lane & 7;
#pragma unroll
  for (int n = 0; n < DH / 8; n += 2) {
    uint32_t b[4];
    ldmatrix_x4_trans(b, vp + (mr + ((mat & 1) << 3)) * kPitch + n * 8 + ((mat >> 1) << 3));
    mma_bf16(out.o[n], a, b[0], b[1]);
    mma_bf16(out.o[n + 1], a, b[2], b[3]);
  }
}

// A row with no visible key is the empty partial, exactly (its P V is all zeros anyway).
template <int DH>
__device__ __forceinline__ void subtile_finish(Partial<DH>& out) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (out.m[h] == -INFINITY) {
      out.l[h] = 0.0f;
#pragma unroll
      for (int n = 0; n < DH / 8; ++n) out.o[n][2 * h] = out.o[n][2 * h + 1] = 0.0f;
    }
  }
}

// The partial of this warp's 16 rows over keys [key0, key0 + 64), whose K and V rows sit in
// shared memory (pitch DH + kPad), computed by the four steps above.
// before_pv() runs between the softmax and P V (the split grid waits for V there, so that V's
// copy overlaps S = Q K^T); it does no arithmetic.
template <int DH, typename BeforePv>
__device__ __forceinline__ void subtile_partial(const uint32_t (&qf)[DH / 16][4],
                                                const __nv_bfloat16* ks, const __nv_bfloat16* vs,
                                                int key0, const int (&last)[2], float scale_log2,
                                                Partial<DH>& out, BeforePv&& before_pv) {
  constexpr int kPitch = DH + kPad;
  float s[kSubKeys / 8][4];
  const __nv_bfloat16* const kp[4] = {ks, ks + 16 * kPitch, ks + 32 * kPitch, ks + 48 * kPitch};
  subtile_scores<DH>(qf, kp, s);
  subtile_softmax<DH>(s, key0, last, scale_log2, out);
  before_pv();
#pragma unroll
  for (int j = 0; j < kSubKeys / 16; ++j) {
    uint32_t a[4];
    subtile_pack_p(s, j, a);
    subtile_pv_piece<DH>(a, vs + j * 16 * kPitch, out);
  }
  subtile_finish<DH>(out);
}

// Physical blocks of the logical blocks that keys [key0, key0 + kKeys) live in, into shared
// memory, so that the copy loop below never waits on a block-table load per 16-byte copy.
// Entries past the block of `last` are not read from the table (they may not exist).
template <int kKeys>
__device__ __forceinline__ void load_table(int* tab, const int32_t* blocks, int shift, int key0,
                                           int last, int tid, int nthreads) {
  const int b0 = key0 >> shift, nblk = ((key0 + kKeys - 1) >> shift) - b0 + 1;
  const int blast = last >> shift;
  for (int i = tid; i < nblk; i += nthreads) tab[i] = b0 + i <= blast ? blocks[b0 + i] : 0;
}

// Copies keys [key0, key0 + kKeys) of one (sequence, kv head) from the paged cache into shared
// memory rows of pitch DH + kPad; keys after `last` are zero-filled (never read from memory).
// kThreads threads share the work (thread index tid); `tab` comes from load_table. The loop has
// a compile-time trip count, so all copies are issued back to back.
template <int DH, int kKeys, int kThreads>
__device__ __forceinline__ void load_keys(__nv_bfloat16* dst, const __nv_bfloat16* cache,
                                          const int* tab, int shift, int64_t cs0, int64_t cs1,
                                          int64_t head_off, int key0, int last, int tid) {
  constexpr int kSegs = DH / 8, kIters = kKeys * kSegs / kThreads;
  static_assert(kKeys * kSegs % kThreads == 0, "copies must divide among the threads");
  const int mask = (1 << shift) - 1, b0 = key0 >> shift;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int i = tid + it * kThreads, kl = i / kSegs, seg = i % kSegs, key = key0 + kl;
    const bool valid = key <= last;
    const __nv_bfloat16* src = valid ? cache + int64_t(tab[(key >> shift) - b0]) * cs0 +
                                           int64_t(key & mask) * cs1 + head_off + seg * 8
                                     : cache;
    cp_async16(dst + kl * (DH + kPad) + seg * 8, src, valid ? 16 : 0);
  }
}

}  // namespace bitexact::ops::cuda::attn
