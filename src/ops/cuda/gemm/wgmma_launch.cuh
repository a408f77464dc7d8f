// Host entry of the Hopper (wgmma + TMA) path of the batch-invariant GEMM, defined in
// linear_wgmma.cu: tile configurations and the launcher that linear.cu calls for
// LinearPath::kWgmma.
#pragma once

#include <cuda_runtime.h>

#include "ops/cuda/linear_kernel.cuh"

namespace bitexact::ops::cuda::linear_detail {

// CTA tiles of the wgmma path. All of them run the same k16 chain per element (the contract of
// linear_kernel.cuh); they differ in speed only. The 128x256 tiles hold no fold registers, so
// they serve plans with one K chunk (S == 1) only. "c2": CTA pairs (clusters) that multicast
// the shared weight tile.
enum class WgmmaTile {
  kAuto, k128x128, k128x256, k64x128, k128x64, k128x192, k128x256c2, k128x192c2, k128x128c2
};
const char* wgmma_tile_name(WgmmaTile tile);
// The tile kAuto takes for this problem (a function of M, N, S only).
WgmmaTile wgmma_auto_tile(int64_t M, int64_t N, int S);

// Launches y = x w^T for p (M, N, K, kc, S, pointers and strides filled in; group_m is set here).
// Throws kInvalidArgument for k128x256 with S > 1, kInternal if a tensor map cannot be encoded.
void launch_wgmma(LinearParams p, cudaStream_t stream, WgmmaTile tile = WgmmaTile::kAuto);

}  // namespace bitexact::ops::cuda::linear_detail
