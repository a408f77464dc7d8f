// fill_uniform on the GPU: the same Philox values as the CPU, for dummy weights.
#include <cuda_bf16.h>

#include "core/philox.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace bitexact::ops::cuda {
namespace {

__global__ void fill_kernel(void* data, DType dtype, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = philox_symmetric(seed, uint64_t(i), scale, offset);
    if (dtype == DType::kBF16) static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(data)[i] = v;
  }
}

}  // namespace

void fill_uniform(const ExecContext& ctx, Tensor& t, uint64_t seed, float scale, float offset) {
  if (t.dtype != DType::kBF16 && t.dtype != DType::kF32)
    fail(ErrorKind::kUnsupported, "fill_uniform on CUDA: bf16 or f32 only");
  const int64_t n = t.numel();
  // Each element is a pure function of its index, so the grid shape cannot change the values.
  int blocks = int(std::min<int64_t>((n + 255) / 256, 65536));
  fill_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(ctx.stream)>>>(t.data, t.dtype, n, seed, scale, offset);
  BITEXACT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace bitexact::ops::cuda
