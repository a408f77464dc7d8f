// CUDA sum_partials: out[m,n] = ((p0 + p1) + p2) + ... over bf16 partials, one f32 accumulator
// per element (one thread), rounded once to bf16. No atomics and no tree whose shape depends on
// the launch: the order is the part order for every element (tensor-parallel fold).
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {

__global__ void sum_partials_kernel(const __nv_bfloat16* __restrict__ p, int64_t parts,
                                    int64_t part, int64_t n_cols, __nv_bfloat16* __restrict__ out,
                                    int64_t ldo) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < part;
       t += int64_t(gridDim.x) * blockDim.x) {
    float acc = __bfloat162float(p[t]);
    for (int64_t j = 1; j < parts; ++j) acc += __bfloat162float(p[j * part + t]);
    out[(t / n_cols) * ldo + t % n_cols] = __float2bfloat16_rn(acc);
  }
}

}  // namespace

void sum_partials(const ExecContext& ctx, const Tensor& partials, Tensor& out) {
  if (partials.dtype != DType::kBF16 || out.dtype != DType::kBF16)
    unsupported("sum_partials", "partials and out must be bf16");
  const int64_t P = partials.dim(0), M = partials.dim(1), N = partials.dim(2);
  const int64_t part = M * N;
  if (part == 0) return;
  const unsigned grid = std::max(1u, std::min<unsigned>(ceil_div(part, 256), 1u << 16));
  BITEXACT_CUDA_CHECK(launch_pdl(sum_partials_kernel, dim3(grid), dim3(256), 0, stream_of(ctx),
                                 static_cast<const __nv_bfloat16*>(partials.data), P, part, N,
                                 static_cast<__nv_bfloat16*>(out.data), out.stride[0]));
}

}  // namespace bitexact::ops::cuda
