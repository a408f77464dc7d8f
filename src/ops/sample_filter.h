// The top-p / min-p filters of every temperature draw (engine's Sampler, ops::cpu::sample_tokens,
// ops/cuda/sample_select.cuh), defined in integers so that a parallel computation in any order
// and a sequential one give the same kept set.
//
// Over the candidates sorted by (logit desc, id asc), c_0 the best, mx its logit:
//   q_i = race_scaled(l_i, mx, T)                    (the race's scaled logit, <= 0)
//   W_i = filter_weight(q_i) = trunc(2^40 exp(q_i))  (exp: our polynomial below; 0 for q <= -30,
//                                                     NaN or -inf; W_0 = 2^40 for a finite row)
// min_p (m > 0): keep the prefix before the first candidate with W_i < M, M = ceil(m 2^40) (so
//   W_i >= M iff W_i / 2^40 >= m exactly); at least c_0.
// top_p (p < 1): over the candidates min_p kept, total = sum W_i (an integer: exact in any order);
//   keep the smallest prefix (at least c_0) whose integer sum reaches
//   thr = ceil(total P / 2^32), P = ceil(p 2^32) (p rounded up to a multiple of 2^-32).
// top_k (when set) is applied first, min_p second, top_p last, as vLLM does. The kept prefix is
// a set of keys >= one cutoff key, so the device finds it by radix selection without a sort
// (sums of integers per digit bin, any order); the host walks the sorted list. Nothing here is
// a float sum, so no order of additions can change a kept set.
// Why a polynomial and not std::exp / expf: they differ between libm and CUDA in the last bit,
// and one bit of W can move a cutoff. Every float op is one IEEE op or an explicit fma (as in
// sample_race.h), so host and device compute each W_i to the bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/sample_race.h"

namespace bitexact::ops::filter {

constexpr double kTopPScale = 4294967296.0;     // 2^32: top_p's units
constexpr double kWeightScale = 1099511627776.0;  // 2^40: a weight's units (W_0 = 2^40)

// P = ceil(top_p 2^32) for 0 < top_p < 1, else 0 (off). top_p 2^32 is exact in double.
inline uint64_t top_p_units(double top_p) {
  return top_p > 0.0 && top_p < 1.0 ? uint64_t(std::ceil(top_p * kTopPScale)) : 0;
}

// M = ceil(min_p 2^40) for min_p > 0 (<= 1), else 0 (off).
inline uint64_t min_p_units(double min_p) {
  return min_p > 0.0 ? uint64_t(std::ceil(std::fmin(min_p, 1.0) * kWeightScale)) : 0;
}

// W = trunc(2^40 exp(q)) for q <= 0 (q > 0 is taken as 0; NaN, -inf and q <= -30 give 0: there
// 2^40 e^q < 0.11). exp: q = k ln2 + r with k = floor(q log2(e) + 1/2) (|r| <= 0.347), ln2 split
// in two floats as in race_log (k hi is exact), e^r by its Taylor polynomial to r^7 in Horner form
// (truncation < 6e-9 relative), then the exact scaling by 2^(40+k) and truncation to an integer.
// A few ulps from exp, like race_log (sample_filter_test measures it); W_0 = 2^40 exactly.
BITEXACT_HD inline uint64_t filter_weight(float q) {
  if (!(q > -30.0f)) return 0;
  if (q > 0.0f) q = 0.0f;
  const float k = floorf(race::fma(q, 1.44269502f, 0.5f));  // exact on host and device  // in [-43, 0]
  float r = race::fma(-k, 0.693145751953125f, q);
  r = race::fma(-k, 1.4286068202862268e-06f, r);
  float p = 1.98412698e-04f;          // 1/5040
  p = race::fma(p, r, 1.38888889e-03f);  // 1/720
  p = race::fma(p, r, 8.33333377e-03f);  // 1/120
  p = race::fma(p, r, 4.16666679e-02f);  // 1/24
  p = race::fma(p, r, 1.66666672e-01f);  // 1/6
  p = race::fma(p, r, 0.5f);
  p = race::fma(p, r, 1.0f);
  p = race::fma(p, r, 1.0f);  // e^r in [0.70, 1.42]
  const int e = 40 + int(k);
  if (e < 0) return 0;  // p 2^e < 1
  const float w = race::mul(p, race::bits_f32(uint32_t(127 + e) << 23));  // exact: a power of 2
#ifdef __CUDA_ARCH__
  return __float2ull_rz(w);
#else
  return uint64_t(w);  // truncation, exact below 2^64
#endif
}

// The weight of a candidate with logit l in a row whose best candidate has logit mx.
BITEXACT_HD inline uint64_t filter_weight_of(float l, float mx, float temperature) {
  return filter_weight(race::race_scaled(l, mx, temperature));
}

// thr = ceil(total P / 2^32) without overflow: total < 2^64 (V <= 2^23 weights of <= 2^40 (1 +
// 2^-23), the op's bound on V), P <= 2^32. total = h 2^32 + l: thr = h P + ceil(l P / 2^32), with
// h P < 2^64 and l P + 2^32 - 1 < 2^64.
BITEXACT_HD inline uint64_t top_p_threshold(uint64_t total, uint64_t p_units) {
  const uint64_t h = total >> 32, l = total & 0xffffffffu;
  return h * p_units + ((l * p_units + 0xffffffffu) >> 32);
}

// The host side: how many of n sorted candidates (logit_of(i) the i-th's logit, i = 0 the best)
// min_p then top_p keep, in [1, n]. w: scratch for n weights.
template <class LogitOf>
inline int64_t filter_sorted(int64_t n, float temperature, uint64_t top_p_u, uint64_t min_p_u,
                             uint64_t* w, LogitOf logit_of) {
  if (n <= 0) return n;
  const float mx = logit_of(0);
  int64_t keep = n;
  if (min_p_u) {
    int64_t i = 0;
    while (i < keep && filter_weight_of(logit_of(i), mx, temperature) >= min_p_u) ++i;
    keep = i > 0 ? i : 1;
  }
  if (top_p_u) {
    uint64_t total = 0;
    for (int64_t i = 0; i < keep; ++i) total += w[i] = filter_weight_of(logit_of(i), mx, temperature);
    const uint64_t thr = top_p_threshold(total, top_p_u);
    uint64_t cum = w[0];
    int64_t i = 1;
    while (i < keep && cum < thr) cum += w[i++];
    keep = i;
  }
  return keep;
}

}  // namespace bitexact::ops::filter
