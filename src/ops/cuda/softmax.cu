// CUDA log-softmax over rows of logits (bf16 or f32 in, f32 out). One CTA of 1024 threads per row
// whatever the batch: the max is exact in any order, and the sum of exponentials runs per thread
// over a fixed stride then through a fixed shuffle tree, so a row's bits depend on V alone.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {

constexpr int kThreads = 1024;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    log_softmax_kernel(const T* __restrict__ x, int64_t xs, float* __restrict__ out, int64_t os,
                       int64_t v) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const T* row = x + blockIdx.x * xs;
  float* o = out + blockIdx.x * os;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) mx = fmaxf(mx, to_f32(row[i]));
  mx = block_max<kThreads>(mx, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < v; i += kThreads) sum += expf(to_f32(row[i]) - mx);
  sum = block_sum<kThreads>(sum, scratch);
  const float lse = mx + logf(sum);
  for (int64_t i = threadIdx.x; i < v; i += kThreads) o[i] = to_f32(row[i]) - lse;
}

}  // namespace

void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out) {
  const int64_t rows = logits.dim(0), v = logits.dim(1);
  if (rows == 0) return;
  cudaStream_t st = stream_of(ctx);
  switch (logits.dtype) {
    case DType::kBF16:
      BITEXACT_CUDA_CHECK(launch_pdl(log_softmax_kernel<__nv_bfloat16>, dim3(unsigned(rows)),
                                     dim3(kThreads), 0, st, logits.ptr<__nv_bfloat16>(),
                                     logits.stride[0], out.ptr<float>(), out.stride[0], v));
      break;
    case DType::kF32:
      BITEXACT_CUDA_CHECK(launch_pdl(log_softmax_kernel<float>, dim3(unsigned(rows)),
                                     dim3(kThreads), 0, st, logits.ptr<float>(), logits.stride[0],
                                     out.ptr<float>(), out.stride[0], v));
      break;
    default:
      unsupported("log_softmax", "logits must be BF16 or F32");
  }
}

}  // namespace bitexact::ops::cuda
