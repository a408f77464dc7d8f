// Fixed-order dot products for the CPU backend. Each dot accumulates in 8 lanes (lane j takes
// k = j mod 8, in increasing k, with fused multiply-add), then sums the lanes in one fixed tree.
// The AVX2 and scalar paths follow this same order, so the result of a dot is a function of its
// two input vectors only: never of the batch, the thread, or which micro-kernel computed it.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define BITEXACT_CPU_AVX2 1
#endif

namespace bitexact::ops::cpu {

// Weight element types the CPU kernels read directly from the checkpoint.
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

inline float to_f32(float v) { return v; }
inline float to_f32(Bf16 v) { return bf16_to_f32(v.bits); }
inline float to_f32(F16 v) { return f16_to_f32(v.bits); }

// The fixed lane-combining tree: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float reduce_lanes(const float l[8]) {
  float s0 = l[0] + l[4], s1 = l[1] + l[5], s2 = l[2] + l[6], s3 = l[3] + l[7];
  return (s0 + s2) + (s1 + s3);
}

#ifdef BITEXACT_CPU_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const Bf16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8(const F16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// Loads n < 8 elements into the low lanes, zeros elsewhere (0*0 added to a lane keeps it).
template <typename T>
inline __m256 load_partial(const T* p, int n) {
  alignas(32) T tmp[8] = {};
  for (int i = 0; i < n; ++i) tmp[i] = p[i];
  return load8(tmp);
}
inline float reduce_lanes(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return reduce_lanes(l);
}
#endif

// sum_k x[k] * w[k] over [0, n), in the fixed order described above.
template <typename W>
inline float dot(const float* x, const W* w, int64_t n) {
#ifdef BITEXACT_CPU_AVX2
  __m256 acc = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(load8(x + k), load8(w + k), acc);
  if (k < n) acc = _mm256_fmadd_ps(load_partial(x + k, int(n - k)), load_partial(w + k, int(n - k)), acc);
  return reduce_lanes(acc);
#else
  float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t k = 0; k < n; ++k) l[k & 7] = std::fma(x[k], to_f32(w[k]), l[k & 7]);
  return reduce_lanes(l);
#endif
}

}  // namespace bitexact::ops::cpu
