// The cutoff of a filtered sample_tokens row (top_p / min_p, or a top_k above the op's candidate
// count) without sorting the vocabulary: the kept tokens of ops/sample_filter.h are the keys
// top_key(logit, id) >= one cutoff key, found by radix selection over the 64-bit keys.
//   top_k: the k-th largest key (a count select), or the k-th candidate of top_tokens;
//   min_p: the first failure in sorted order is the largest key with W < M: a max reduction;
//   top_p: the largest key K whose suffix sum S(K) = sum W over kept keys >= K reaches thr.
// A select descends the key's logit bits in digits of up to 12 bits, high to low: per digit one
// pass over the row adds f (1 or W) into a shared histogram of the keys that match the digits
// chosen so far, then picks the bin where the running sum from the top crosses the target; then
// one pass picks the needed lowest ids of the tie at that logit. Every sum is an integer (64-bit
// sums from 32-bit shared atomics with carries), exact in any order, so the cutoff is a function
// of the row alone; the race (sample_tokens.cu) then runs over the keys >= the cutoff. One CTA
// per row; a bf16 row takes 3 passes (4 with min_p), an f32 row 4.
#pragma once

#include "ops/cuda/cuda_common.cuh"
#include "ops/sample_filter.h"

namespace bitexact::ops::cuda {

constexpr int kSelectThreads = 1024;
constexpr int kSelectBits = 12;

// A row drawn after a select (its cutoff in RaceScratch::cutoff): temperature > 0 and top_p or
// min_p, or a top_k the n candidates of top_tokens do not cover.
__device__ __forceinline__ bool filtered_row(const SampleRow& p, int64_t v, int n) {
  return p.temperature > 0.0f &&
         (p.top_p_units != 0 || p.min_p_units != 0 || (p.top_k > n && p.top_k < v));
}

// A bin's 64-bit sum as two 32-bit words: the shared-memory 64-bit atomic add is a CAS loop on
// sm_90 (it spins under contention); the 32-bit one is native. The low word's atomicAdd returns
// the old value, and a wrap adds 1 to the high word, so any interleaving sums to the same 64-bit
// value. The id pass reuses the words as a bitmap of 2^18 ids.
constexpr int kBitmapIdBits = 18;
struct SelectShared {
  unsigned words[2 << kSelectBits];  // hist_lo = words, hist_hi = words + 4096; or the bitmap
  uint64_t warp[kSelectThreads / 32];
  uint64_t chosen_bin, chosen_above;
};
static_assert((2 << kSelectBits) * 32 == 1 << kBitmapIdBits, "the bitmap covers 2^18 ids");

// Calls fn(i, x) for every column i of the row, x its logit in f32: 16-byte loads (8 bf16 or 4
// f32 per thread per load) where the row is 16-byte aligned, then the tail one by one. Which
// thread sees which column does not matter: the callers only add integers, set bits or take
// maxima.
template <typename T, typename Fn>
__device__ __forceinline__ void scan_row(const T* __restrict__ row, int64_t v, Fn fn) {
  constexpr int kVec = 16 / int(sizeof(T));
  const int64_t nvec = reinterpret_cast<uintptr_t>(row) % 16 == 0 ? v / kVec : 0;
  const uint4* vrow = reinterpret_cast<const uint4*>(row);
  for (int64_t q = threadIdx.x; q < nvec; q += kSelectThreads) {
    const uint4 u = vrow[q];
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int j = 0; j < kVec; ++j) fn(q * kVec + j, to_f32(e[j]));
  }
  for (int64_t i = nvec * kVec + threadIdx.x; i < v; i += kSelectThreads) fn(i, to_f32(row[i]));
}

// Exclusive prefix sum over the block (thread order) of `local`; total: the sum over all threads.
__device__ __forceinline__ uint64_t block_exclusive_sum(uint64_t local, uint64_t& total, SelectShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint64_t incl = local;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint64_t t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) sh.warp[warp] = incl;
  __syncthreads();
  uint64_t before = 0;
  total = 0;
  for (int w = 0; w < kSelectThreads / 32; ++w) {
    const uint64_t s = sh.warp[w];
    if (w < warp) before += s;
    total += s;
  }
  __syncthreads();  // sh.warp is free again
  return before + incl - local;
}

// The logit whose top_key_bits are kb (the inverse of top_key_bits; 0 is NaN).
__device__ __forceinline__ float key_logit(uint32_t kb) {
  if (kb == 0) return __int_as_float(0x7fc00000);
  return __uint_as_float((kb & 0x80000000u) ? (kb & 0x7fffffffu) : ~kb);
}

// The largest key K with sum of f over {keys >= max(K, lo)} >= target, f = W (weighted) or 1.
// weighted: target is ignored; the first pass's grand total gives thr = top_p_threshold(total, pu)
// (0: returns `best`, the top key, as the filters keep at least one token). The key's bits are
// (top_key_bits(logit) << 32) | ~id; ids < 2^nb, so bits [nb, 32) are ones and are not visited.
// Passes: the logit bits in digits of 12, 12, 8 (f32) or 12, 4 (bf16: bits 32..47 then follow
// from the sign: zeros for a positive value or NaN, ones for a negative one), then the id: the
// tied tokens (one logit, one f each) need j = ceil((target - above) / f) of them, the j lowest
// ids, found in one pass as the j-th set bit of a bitmap of ids (V <= 2^18), else by 12-bit id
// digits.
template <typename T, bool kWeighted>
__device__ uint64_t select_key(const T* __restrict__ row, int64_t v, uint64_t lo, uint64_t target,
                               uint64_t pu, float mx, float temp, uint64_t best, SelectShared& sh) {
  constexpr bool kBf16 = sizeof(T) == 2;
  int nb = 1;
  while ((int64_t(1) << nb) < v) ++nb;
  const uint64_t id_mask = (1ull << nb) - 1;
  uint64_t prefix = 0xffffffffull & ~id_mask, mask = prefix;
  uint64_t above = 0;
  unsigned* hist_lo = sh.words;
  unsigned* hist_hi = sh.words + (1 << kSelectBits);
  bool first = true;
  // One digit pass: the histogram of f over keys >= lo matching prefix on mask, by bits
  // [shift, shift + width); picks the bin where the sum from the top reaches target.
  auto digit = [&](int shift, int width) -> bool {
    const int bins = 1 << width;
    for (int i = threadIdx.x; i < bins; i += kSelectThreads) hist_lo[i] = hist_hi[i] = 0;
    __syncthreads();
    scan_row(row, v, [&](int64_t i, float x) {
      const uint64_t key = top_key(x, int32_t(i));
      if (key < lo || (key & mask) != prefix) return;
      const uint64_t f = kWeighted ? filter::filter_weight_of(x, mx, temp) : 1;
      if (f == 0) return;
      const int b = int((key >> shift) & uint64_t(bins - 1));
      const unsigned lo32 = unsigned(f), old = atomicAdd(&hist_lo[b], lo32);
      const unsigned hi32 = unsigned(f >> 32) + (old + lo32 < old ? 1u : 0u);
      if (hi32) atomicAdd(&hist_hi[b], hi32);
    });
    __syncthreads();
    // Thread t owns positions [4t, 4t + 4) of the bins in descending order.
    uint64_t h[4], local = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int pos = 4 * int(threadIdx.x) + j;
      h[j] = pos < bins ? uint64_t(hist_hi[bins - 1 - pos]) << 32 | hist_lo[bins - 1 - pos] : 0;
      local += h[j];
    }
    uint64_t total;
    const uint64_t before = block_exclusive_sum(local, total, sh);
    if (kWeighted && first) target = filter::top_p_threshold(total, pu);
    first = false;
    if (target == 0) return false;  // nothing to reach (a weighted select's total 0)
    if (threadIdx.x == 0) sh.chosen_bin = 0, sh.chosen_above = above;
    __syncthreads();
    uint64_t acc = above + before;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int pos = 4 * int(threadIdx.x) + j;
      if (pos < bins && acc < target && target <= acc + h[j])
        sh.chosen_bin = uint64_t(bins - 1 - pos), sh.chosen_above = acc;  // one thread, one bin
      acc += h[j];
    }
    __syncthreads();
    prefix |= sh.chosen_bin << shift;
    above = sh.chosen_above;
    mask |= uint64_t(bins - 1) << shift;
    __syncthreads();  // the words are rewritten by the next pass
    return true;
  };
  if (kBf16) {
    if (!digit(52, 12)) return best;
    digit(48, 4);
    const bool ones = (prefix >> 63) == 0 && (prefix >> 52) != 0;  // negative, not NaN
    prefix |= ones ? 0x0000ffff00000000ull : 0;
    mask |= 0x0000ffff00000000ull;
  } else {
    if (!digit(52, 12)) return best;
    digit(40, 12);
    digit(32, 8);
  }
  if (nb > kBitmapIdBits) {  // a large vocabulary: id digits
    for (int hi = nb; hi > 0;) {
      const int width = hi >= kSelectBits ? kSelectBits : hi;
      digit(hi - width, width);
      hi -= width;
    }
    return prefix;
  }
  // The tie at logit key prefix >> 32: each of its tokens weighs f.
  const uint64_t f = kWeighted ? filter::filter_weight_of(key_logit(uint32_t(prefix >> 32)), mx, temp) : 1;
  const uint64_t need = (target - above + f - 1) / f;  // >= 1: target > above, f > 0
  constexpr int kWords = 2 << kSelectBits, kPer = kWords / kSelectThreads;
  for (int i = threadIdx.x; i < kWords; i += kSelectThreads) sh.words[i] = 0;
  __syncthreads();
  scan_row(row, v, [&](int64_t i, float x) {
    const uint64_t key = top_key(x, int32_t(i));
    if (key >= lo && (key & ~id_mask) == prefix) atomicOr(&sh.words[i >> 5], 1u << (i & 31));
  });
  __syncthreads();
  unsigned wv[kPer];
  uint64_t local = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) wv[j] = sh.words[kPer * threadIdx.x + j], local += __popc(wv[j]);
  uint64_t total;
  uint64_t seen = block_exclusive_sum(local, total, sh);
  if (seen < need && need <= seen + local) {  // the need-th lowest id is in this thread's words
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      unsigned w = wv[j];
      while (w) {
        const int b = __ffs(w) - 1;
        if (++seen == need) sh.chosen_bin = uint64_t(kPer * threadIdx.x + j) * 32 + b;
        w &= w - 1;
      }
    }
  }
  __syncthreads();
  const uint64_t id = sh.chosen_bin;
  __syncthreads();
  return prefix | (~id & id_mask);
}

// The largest key >= lo among tokens whose weight is below min_p's M (0: none; keys below lo
// are cut by top_k already, so their weights are not computed).
template <typename T>
__device__ uint64_t min_p_failure(const T* __restrict__ row, int64_t v, uint64_t lo, uint64_t m,
                                  float mx, float temp, SelectShared& sh) {
  uint64_t worst = 0;
  scan_row(row, v, [&](int64_t i, float x) {
    const uint64_t key = top_key(x, int32_t(i));
    if (key >= lo && key > worst && filter::filter_weight_of(x, mx, temp) < m) worst = key;
  });
  worst = warp_max_key(worst);
  if ((threadIdx.x & 31) == 0) sh.warp[threadIdx.x >> 5] = worst;
  __syncthreads();
  worst = 0;
  for (int w = 0; w < kSelectThreads / 32; ++w) worst = sh.warp[w] > worst ? sh.warp[w] : worst;
  __syncthreads();
  return worst;
}

// Grid (rows), kSelectThreads threads: cutoff[r] for every filtered row; other rows return.
// cand_ids / cand_vals: top_tokens' n best of each row (n >= 1; [0] is the best, mx).
template <typename T>
__global__ void __launch_bounds__(kSelectThreads)
    select_cutoff_kernel(const T* __restrict__ x, int64_t xs, int64_t v,
                         const SampleRow* __restrict__ prm, int n,
                         const int32_t* __restrict__ cand_ids, const float* __restrict__ cand_vals,
                         uint64_t* __restrict__ cutoff) {
  __shared__ SelectShared sh;
  const int64_t r = blockIdx.x;
  const SampleRow p = prm[r];
  if (!filtered_row(p, v, n)) return;
  const T* row = x + r * xs;
  const float mx = cand_vals[r * n];
  const uint64_t best = top_key(mx, cand_ids[r * n]);
  uint64_t lo = 0;
  if (p.top_k > 0 && p.top_k < v)
    lo = p.top_k <= n ? top_key(cand_vals[r * n + p.top_k - 1], cand_ids[r * n + p.top_k - 1])
                      : select_key<T, false>(row, v, 0, uint64_t(p.top_k), 0, mx, p.temperature,
                                             best, sh);
  if (p.min_p_units) {
    const uint64_t fail = min_p_failure(row, v, lo, p.min_p_units, mx, p.temperature, sh);
    if (fail != 0) lo = fail + 1;  // the prefix before the first failure
    if (lo > best) lo = best;                    // at least the best token
  }
  if (p.top_p_units)
    lo = select_key<T, true>(row, v, lo, 0, p.top_p_units, mx, p.temperature, best, sh);
  if (threadIdx.x == 0) cutoff[r] = lo;
}

}  // namespace bitexact::ops::cuda
