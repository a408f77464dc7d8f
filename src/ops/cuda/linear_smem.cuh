// The shared-memory layout of the mma.sync GEMM's pipeline stages (linear_kernel.cuh), which the
// norm prologue (linear_norm.cuh) writes too: 16-byte chunks, XOR-swizzled per row.
#pragma once

#include <cstdint>

namespace bitexact::ops::cuda::linear_detail {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Shared-memory tile of `rows` x BK bf16: BK/8 chunks of 16 bytes per row, chunk index XORed
// with (row & 7) so that ldmatrix's 8 row addresses of one 8x8 matrix hit 8 different bank groups.
template <int BK>
__device__ __forceinline__ uint32_t tile_offset(int row, int chunk) {
  return uint32_t(row * (BK * 2) + ((chunk ^ (row & 7)) << 4));
}

// 16 bytes into shared memory at a 32-bit shared address (the swizzled tile offsets above): for
// the operands a kernel makes itself instead of copying (norm, SwiGLU).
__device__ __forceinline__ void st_shared_u4(uint32_t addr, const uint4& v) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}

}  // namespace bitexact::ops::cuda::linear_detail
