// The total order of top_tokens, shared by the CPU and CUDA kernels: one 64-bit key per entry,
// larger for a larger value and, among equal values, for a smaller column. The key is unique
// per column, so "the n largest keys" is one well-defined set in one order on every device.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/philox.h"  // BITEXACT_HD

namespace bitexact::ops {

// Float bits mapped to an unsigned integer in the order of the floats (-0 == +0); NaN maps to 0,
// below every number.
BITEXACT_HD inline uint32_t top_key_bits(float x) {
  if (x != x) return 0u;
  if (x == 0.0f) x = 0.0f;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

BITEXACT_HD inline uint64_t top_key(float x, int32_t column) {
  return uint64_t(top_key_bits(x)) << 32 | uint32_t(~uint32_t(column));
}

BITEXACT_HD inline int32_t top_key_column(uint64_t key) { return int32_t(~uint32_t(key)); }

}  // namespace bitexact::ops
