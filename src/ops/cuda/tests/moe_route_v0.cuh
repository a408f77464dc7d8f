// The routing kernel as it was before the one-launch path (one warp per token, probabilities in
// shared memory, k rounds of a 64-bit shuffle max), kept verbatim so that moe_cuda_test can prove
// the new routing writes the same ids and weights, bit for bit, on every input without NaNs.
// Known difference: a NaN probability could be taken twice here (its -inf mark ranked above
// the NaN keys left); the new routing never takes an expert twice, as the CPU.
#pragma once

#include "ops/cuda/cuda_common.cuh"
#include "ops/top_key.h"

namespace bitexact::ops::cuda::test {

constexpr int kRouteV0Warps = 4;

__device__ __forceinline__ float route_v0_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float route_v0_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Launch: <<<ceil(M / 4), 128, 4 * E * 4>>>.
template <typename T>
__global__ void __launch_bounds__(kRouteV0Warps * 32)
    route_v0_kernel(const T* __restrict__ logits, int64_t ls, int M, int E, int k, bool norm,
                    int32_t* __restrict__ ids, float* __restrict__ weights) {
  extern __shared__ float route_smem[];  // [kRouteV0Warps][E]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m = blockIdx.x * kRouteV0Warps + warp;
  if (m >= M) return;
  float* p = route_smem + warp * E;
  const T* row = logits + int64_t(m) * ls;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) {
    const float v = to_f32(row[e]);
    p[e] = v;
    mx = fmaxf(mx, v);
  }
  mx = route_v0_warp_max(mx);
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) {
    const float q = expf(p[e] - mx);
    p[e] = q;
    sum += q;
  }
  sum = route_v0_warp_sum(sum);
  for (int e = lane; e < E; e += 32) p[e] = p[e] / sum;
  __syncwarp();
  float total = 0.f;
  for (int s = 0; s < k; ++s) {
    uint64_t best = 0;
    for (int e = lane; e < E; e += 32) {
      const uint64_t key = top_key(p[e], e);
      best = key > best ? key : best;
    }
    const int winner = top_key_column(warp_max_key(best));
    if (lane == 0) {
      const float w = p[winner];
      ids[int64_t(m) * k + s] = winner;
      weights[int64_t(m) * k + s] = w;
      total += w;
    }
    __syncwarp();
    if ((winner & 31) == lane) p[winner] = -INFINITY;
    __syncwarp();
  }
  if (norm && lane == 0)
    for (int s = 0; s < k; ++s) weights[int64_t(m) * k + s] /= total;
}

// ids [M, k], weights [M, k] on the device from logits [M, E] (bf16 or f32).
inline void route_v0(const Tensor& logits, int64_t k, bool norm, Tensor& ids, Tensor& weights) {
  const int64_t M = logits.dim(0), E = logits.dim(1);
  const unsigned blocks = ceil_div(M, kRouteV0Warps);
  const size_t smem = size_t(kRouteV0Warps * E * 4);
  if (logits.dtype == DType::kBF16)
    route_v0_kernel<<<blocks, kRouteV0Warps * 32, smem>>>(
        logits.ptr<__nv_bfloat16>(), logits.stride[0], int(M), int(E), int(k), norm,
        ids.ptr<int32_t>(), weights.ptr<float>());
  else
    route_v0_kernel<<<blocks, kRouteV0Warps * 32, smem>>>(logits.ptr<float>(), logits.stride[0],
                                                          int(M), int(E), int(k), norm,
                                                          ids.ptr<int32_t>(), weights.ptr<float>());
  BITEXACT_CUDA_CHECK_LAUNCH();
}

}  // namespace bitexact::ops::cuda::test
