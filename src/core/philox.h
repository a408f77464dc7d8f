// Counter-based RNG (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (key, counter): sampling keys it by (request seed, token index), so a sample never depends on
// what else ran, in what order, or on which device.
#pragma once

#include <array>
#include <cstdint>

#ifdef __CUDACC__
#define BITEXACT_HD __host__ __device__
#else
#define BITEXACT_HD
#endif

namespace bitexact {

// Philox on plain arrays, callable from host and device code alike.
BITEXACT_HD inline void philox4x32_10_raw(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(0xD2511F53u) * ctr[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr[2];
    uint32_t c0 = uint32_t(p1 >> 32) ^ ctr[1] ^ k0, c2 = uint32_t(p0 >> 32) ^ ctr[3] ^ k1;
    ctr[1] = uint32_t(p1);
    ctr[3] = uint32_t(p0);
    ctr[0] = c0;
    ctr[2] = c2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// A float in [offset - scale, offset + scale) from (seed, index): the dummy-weight initialiser,
// identical on CPU and GPU so that a dummy model is the same model on both.
BITEXACT_HD inline float philox_symmetric(uint64_t seed, uint64_t index, float scale, float offset) {
  uint32_t c[4] = {uint32_t(index), uint32_t(index >> 32), 0x5eed, 0};
  philox4x32_10_raw(c, uint32_t(seed), uint32_t(seed >> 32));
  float u = float(c[0] >> 8) * (1.0f / 16777216.0f);  // 24 bits: exact in f32
  return offset + scale * (2.0f * u - 1.0f);
}

inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr,
                                             std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * ctr[0];
    uint64_t p1 = uint64_t(kM1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

// Uniform double in [0, 1) with 53 random bits, from (seed, counter, stream).
// `stream` separates independent uses of one (seed, counter), e.g. n > 1 samples.
inline double philox_uniform(uint64_t seed, uint64_t counter, uint32_t stream = 0) {
  auto r = philox4x32_10({uint32_t(counter), uint32_t(counter >> 32), stream, 0},
                         {uint32_t(seed), uint32_t(seed >> 32)});
  uint64_t bits = (uint64_t(r[0]) << 32 | r[1]) >> 11;
  return double(bits) * (1.0 / 9007199254740992.0);
}

}  // namespace bitexact
