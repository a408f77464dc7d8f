// Element types and the scalar conversions between them (bf16/f16 <-> f32, round to nearest even).
// These are the one definition of rounding used everywhere, CPU reference included.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace bitexact {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32 };

inline size_t dtype_size(DType t) { return t == DType::kBF16 || t == DType::kF16 ? 2 : 4; }
std::string_view dtype_name(DType t);

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN (quiet), as torch and the CUDA intrinsics do.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace bitexact
