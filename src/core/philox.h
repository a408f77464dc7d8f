// Counter-based RNG (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (key, counter): sampling keys it by (request seed, token index), so a sample never depends on
// what else ran, in what order, or on which device.
#pragma once

#include <array>
#include <cstdint>

namespace bitexact {

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
