// Small helpers shared by the io readers (internal to src/io): overflow-checked size arithmetic,
// little-endian loads from unaligned bytes, and a CPU tensor view over a shape of any rank <= 4.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace bitexact::io::detail {

// a * b, or false when it does not fit in 64 bits.
inline bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// Element count of `shape` (all entries >= 0), or false on overflow past INT64_MAX.
inline bool numel_ok(const std::vector<int64_t>& shape, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || !mul_ok(n, uint64_t(d), &n)) return false;
  }
  if (n > uint64_t(INT64_MAX)) return false;
  *out = n;
  return true;
}

// A whole text file (config.json, an index); Error(kIo) naming the path if it cannot be read.
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kIo, "cannot open `" + path + "`");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::kIo, "cannot read `" + path + "`");
  return ss.str();
}

template <typename T>
T load_le(const uint8_t* p) {
  // The project targets little-endian hosts (x86-64, aarch64), so a memcpy is the load.
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A contiguous row-major CPU view of read-only mapped bytes; the caller checked the rank.
inline Tensor mapped_view(const uint8_t* data, DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.data = const_cast<uint8_t*>(data);  // views are untyped; weights are never written through
  t.dtype = dtype;
  t.device = Device::kCpu;
  t.ndim = int(shape.size());
  int64_t st = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.stride[d] = st;
    st *= shape[d];
  }
  return t;
}

inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace bitexact::io::detail
