// SwiGLU's element: silu(g) * u in f32, one expression shared by ops::silu_mul's kernel and the
// MoE down projection that applies it while loading its operand (moe_kernel.cuh), so the two
// give the same bits. IEEE division and the library expf (no fast-math anywhere in the build).
#pragma once

namespace bitexact::ops::cuda {

__device__ __forceinline__ float swiglu(float g, float u) { return g / (1.0f + expf(-g)) * u; }

}  // namespace bitexact::ops::cuda
