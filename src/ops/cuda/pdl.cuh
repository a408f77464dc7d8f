// Programmatic dependent launch (PDL, sm_90): a kernel started by launch_pdl may be scheduled
// while the kernel before it on the stream is still running, so the fixed cost of a launch (and,
// for GEMMs, the first weight loads) overlaps the previous kernel's tail. This matters at decode,
// where a step is hundreds of kernels of a few microseconds each.
// Contract for every kernel launched through launch_pdl:
//  * call pdl_wait() before touching any memory that an earlier kernel of the stream writes or
//    reads (activations, caches, partials, counters), and in every CTA before it exits, even one
//    with nothing to do (a grid none of whose CTAs waited could complete before its predecessor,
//    and the kernel after it would see unfinished data);
//    before it, only kernel parameters and weights (which no kernel of a forward pass writes)
//    may be read;
//  * then pdl_launch_dependents(), which lets the next kernel start its own prologue.
// So when a kernel starts, the kernel before its predecessor has completed (the predecessor
// waited for it before letting this one launch): memory written two or more launches back may be
// read before pdl_wait (the MoE down projection reads the routing so, moe_kernel.cuh), as long
// as every launch in between keeps this contract (plain launches and copies serialise fully).
// The step metadata of ops.h's AttentionMeta is read so by qk_norm_rope_kv_write and the tile4
// decode grid.
// Speed only: the arithmetic of no kernel changes. set_pdl(false) launches everything plainly.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "ops/cuda/cuda_ops.h"

namespace bitexact::ops::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), allowed to overlap the previous kernel when
// PDL is on. Returns the launch's error; callers check it like cudaGetLastError().
template <typename... Params, typename... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                       cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace bitexact::ops::cuda
