// The exponential race (Gumbel-max) that draws every sampled token, on the host (engine's
// Sampler, ops::cpu::sample_tokens) and on CUDA (ops/cuda/sample_tokens.cu) with the same bits.
// Among the candidate tokens i of a row, the draw is the i with the largest key
//   top_key(s_i, i),  s_i = (l_i - mx) / T - log(E_i),  E_i = -log(1 - v_i),
// ties to the lowest id, where l_i is the logit, mx the logit of the row's best candidate (its
// max), T = float(temperature), and v_i in (0, 1] comes from Philox keyed by (seed, token index)
// with the vocabulary id in the counter (one Philox call: 4 words, ids 4q .. 4q+3). E_i is
// Exp(1), so s_i - log(softmax_T(l)_i) is Gumbel and the argmax has probability softmax_T(l)_i.
// Why the arithmetic is spelled out: every float op below is one IEEE-rounded operation (__f*_rn
// on the device, the plain operator or std::fma on the host; no mul feeds an add outside an
// explicit fma, so no compiler contraction can apply) and race_log is our own polynomial, not
// logf or __logf, so host and device compute the same s_i to the bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/philox.h"
#include "ops/top_key.h"

namespace bitexact::ops::race {

BITEXACT_HD inline float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
BITEXACT_HD inline float sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
BITEXACT_HD inline float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
BITEXACT_HD inline float div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
BITEXACT_HD inline float fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
BITEXACT_HD inline float u32_to_f32(uint32_t w) {
#ifdef __CUDA_ARCH__
  return __uint2float_rn(w);
#else
  return float(w);  // round to nearest even, as __uint2float_rn
#endif
}
BITEXACT_HD inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
BITEXACT_HD inline float bits_f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Natural log, deterministic and identical on host and device. x = m 2^e with m in
// [sqrt(1/2), sqrt(2)) split from the bits; log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.1716,
// from the odd series 2s + s^3 (2/3 + 2/5 s^2 + ... + 2/11 s^8) (next term < 1e-10 relative);
// then + e log(2) with log(2) split in two floats. Not correctly rounded: the error is a few
// ulps (sample_race_test measures it against std::log). log(0) = -inf, log(inf) = inf,
// log(x < 0) = log(NaN) = NaN. Subnormal inputs are scaled by 2^23 first.
BITEXACT_HD inline float race_log(float x) {
  if (!(x > 0.0f)) return x == 0.0f ? -INFINITY : NAN;
  uint32_t u = f32_bits(x);
  if (u >= 0x7f800000u) return x;  // +inf
  int e = 0;
  if (u < 0x00800000u) {  // subnormal: exact scaling into the normal range
    u = f32_bits(mul(x, 8388608.0f));
    e = -23;
  }
  e += int(u >> 23) - 127;
  uint32_t mb = (u & 0x007fffffu) | 0x3f800000u;  // m in [1, 2)
  if (mb > 0x3fb504f3u) {                          // m > sqrt(2): use m / 2 in (0.707, 1)
    mb -= 0x00800000u;
    e += 1;
  }
  const float f = sub(bits_f32(mb), 1.0f);  // exact (Sterbenz)
  const float s = div(f, add(2.0f, f));
  const float z = mul(s, s);
  float p = 0.18181818f;   // 2/11
  p = fma(p, z, 0.22222222f);  // 2/9
  p = fma(p, z, 0.28571429f);  // 2/7
  p = fma(p, z, 0.4f);         // 2/5
  p = fma(p, z, 0.66666669f);  // 2/3
  const float lm = fma(mul(s, z), p, add(s, s));
  const float fe = float(e);
  return fma(fe, 0.693145751953125f, fma(fe, 1.4286068202862268e-06f, lm));  // ln2 = hi + lo
}

// The uniform v in (0, 1] of a Philox word: (w | 1) 2^-32, one rounding (the conversion to f32;
// the scaling is exact). Fine near 0, where the race's winners come from (small v, small E,
// large -log E): v >= 2^-32, never 0. No fma: on a host without FMA instructions std::fma is a
// library call, and this runs once per token.
BITEXACT_HD inline float race_uniform(uint32_t w) {
  return mul(u32_to_f32(w | 1u), 2.3283064365386963e-10f);  // 2^-32
}

// E = -log(1 - v), Exp(1)-distributed, accurate for small v: log1p(-v) = log(u) (-v) / (u - 1)
// with u = fl(1 - v) (exact where 1 - v rounds to 1: then E = v). v = 1 gives E = inf, a token
// that cannot win (probability 2^-25).
BITEXACT_HD inline float race_exponential(float v) {
  const float u = sub(1.0f, v);
  if (u == 1.0f) return v;
  return div(mul(race_log(u), v), sub(u, 1.0f));
}

// Philox words for ids [4 quad, 4 quad + 4) of the draw (seed, token index).
BITEXACT_HD inline void race_words(uint64_t seed, uint64_t token_index, uint32_t quad, uint32_t w[4]) {
  w[0] = quad;
  w[1] = uint32_t(token_index);
  w[2] = uint32_t(token_index >> 32);
  w[3] = 0x6a7ce5u;  // a stream of its own: no other Philox use of (seed, index) meets it
  philox4x32_10_raw(w, uint32_t(seed), uint32_t(seed >> 32));
}

// (l - mx) / T, the scaled logit the race adds its noise to. x / 1 == x exactly in IEEE
// arithmetic, so T = 1 (the OpenAI default) skips the division without changing a bit.
BITEXACT_HD inline float race_scaled(float logit, float mx, float temperature) {
  const float d = sub(logit, mx);
  return temperature == 1.0f ? d : div(d, temperature);
}

// s = q - log(E) for the Philox word w of this token.
BITEXACT_HD inline float race_score(float q, uint32_t w) {
  return sub(q, race_log(race_exponential(race_uniform(w))));
}

// The race key: larger score first, then lower id. NaN scores (NaN logits, or a row of -inf
// only) map to 0, below every real key; a race whose best key is 0 takes the best candidate.
BITEXACT_HD inline uint64_t race_key(float score, int32_t id) { return top_key(score, id); }

// An upper bound of -log(E) from v alone (no log): E >= v and v >= 2^ev, so
// -log(E) <= -ev log(2); the 0.001 margin covers race_log's and race_exponential's few-ulp
// errors. Lets the host skip the two logs of a token that cannot beat the best score so far,
// without changing the result: s = fl(q - log E) <= fl(q + bound) < best. A table, so that no
// float operation (and no compiler's choice to fuse one) is involved.
struct RaceNoiseBounds {
  float b[33];
  constexpr RaceNoiseBounds() : b() {
    for (int i = 0; i < 33; ++i) b[i] = float(double(i) * 0.6931471805599453 + 0.001);
  }
};
inline constexpr RaceNoiseBounds kRaceNoiseBounds{};
inline float race_noise_bound(float v) {
  const int ev = int(f32_bits(v) >> 23) - 127;  // v in [2^-32, 1]: normal, ev in [-32, 0]
  return kRaceNoiseBounds.b[-ev];
}
// The largest bound over all v >= 2^-32 (ev >= -32): 22.18.
constexpr float kRaceMaxNoise = 23.0f;

// Host race over a row. Candidates: ids[0, n) when ids is set, else every id in [0, V) with
// excluded == nullptr or !excluded[id]. `best` is the candidate with the largest top_key(logit)
// (mx = logits[best]); it is also the answer when every score is NaN. The scan skips tokens whose
// bound shows they cannot win; the winner is the same as scoring every candidate.
struct RaceHostRow {
  const float* logits;
  int64_t V;
  float temperature;
  uint64_t seed, token_index;
};

// The race among ids[0, n) with logit_of(j) the logit of ids[j] and mx the best candidate's
// logit (`best`: also the answer when every score is NaN). race_candidates reads the logits from
// the vocabulary row; the host sampler's candidate path (engine/sampler.cc) passes the values
// ops::top_tokens returned beside the ids instead, so both run this one loop on the same numbers.
template <class LogitOf>
inline int32_t race_candidates_by(float mx, float temperature, uint64_t seed, uint64_t token_index,
                                  const int32_t* ids, int64_t n, int32_t best, LogitOf logit_of) {
  uint64_t top = 0;
  float top_score = -INFINITY;
  int32_t win = best;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t id = ids[j];
    const float q = race_scaled(logit_of(j), mx, temperature);
    if (add(q, kRaceMaxNoise) < top_score) continue;
    uint32_t w[4];
    race_words(seed, token_index, uint32_t(id) >> 2, w);
    const float v = race_uniform(w[id & 3]);
    if (add(q, race_noise_bound(v)) < top_score) continue;
    const float s = sub(q, race_log(race_exponential(v)));
    const uint64_t k = race_key(s, id);
    if (k > top) top = k, top_score = s, win = id;
  }
  return win;
}

inline int32_t race_candidates(const RaceHostRow& r, const int32_t* ids, int64_t n, int32_t best) {
  return race_candidates_by(r.logits[best], r.temperature, r.seed, r.token_index, ids, n, best,
                            [&](int64_t j) { return r.logits[ids[j]]; });
}

inline int32_t race_row(const RaceHostRow& r, const unsigned char* excluded, int32_t best) {
  const float mx = r.logits[best];
  uint64_t top = 0;
  float top_score = -INFINITY;
  int32_t win = best;
  for (int64_t q0 = 0; q0 < r.V; q0 += 4) {
    const int64_t n = std::min<int64_t>(4, r.V - q0);
    float q[4];
    bool any = false;
    for (int64_t j = 0; j < n; ++j) {
      q[j] = race_scaled(r.logits[q0 + j], mx, r.temperature);
      any = any || !(add(q[j], kRaceMaxNoise) < top_score);
    }
    if (!any) continue;  // no token of this quad can win: skip its Philox call
    uint32_t w[4];
    race_words(r.seed, r.token_index, uint32_t(q0 >> 2), w);
    for (int64_t j = 0; j < n; ++j) {
      const int32_t id = int32_t(q0 + j);
      if (excluded && excluded[id]) continue;
      const float v = race_uniform(w[j]);
      if (add(q[j], race_noise_bound(v)) < top_score) continue;
      const float s = sub(q[j], race_log(race_exponential(v)));
      const uint64_t k = race_key(s, id);
      if (k > top) top = k, top_score = s, win = id;
    }
  }
  return win;
}

}  // namespace bitexact::ops::race
