// Row addressing for CPU kernels: a tensor of rank 2 or 3 is a list of contiguous last-dimension
// rows at arbitrary outer strides (e.g. the q heads inside a fused qkv row).
#pragma once

#include "core/tensor.h"

namespace bitexact::ops::cpu {

inline int64_t num_rows(const Tensor& t) { return t.ndim == 3 ? t.shape[0] * t.shape[1] : t.shape[0]; }

template <typename T>
inline T* row_ptr(const Tensor& t, int64_t r) {
  int64_t off = t.ndim == 3 ? (r / t.shape[1]) * t.stride[0] + (r % t.shape[1]) * t.stride[1]
                            : r * t.stride[0];
  return static_cast<T*>(t.data) + off;
}

}  // namespace bitexact::ops::cpu
