// Thread-block cluster helpers (sm_90) for the kernels whose CTAs meet in one CTA's shared
// memory (DSMEM): the tile4 decode grid's sub-tile partials and the GEMM's cluster fold. A cluster
// barrier (arrive, then wait; release / acquire orders shared::cluster stores), the address of a
// shared-memory object in cluster rank 0, and stores there.
#pragma once

#include <cstdint>

namespace bitexact::ops::cuda {

__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_arrive_release() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// The address of `p` (in this CTA's shared memory) in rank 0 of the cluster.
__device__ __forceinline__ uint32_t map_to_rank0(const void* p) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, 0;\n"
               : "=r"(r)
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p))));
  return r;
}
__device__ __forceinline__ void st_cluster_f2(uint32_t addr, float x, float y) {
  asm volatile("st.shared::cluster.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y)
               : "memory");
}
__device__ __forceinline__ void st_cluster_f(uint32_t addr, float x) {
  asm volatile("st.shared::cluster.f32 [%0], %1;\n" ::"r"(addr), "f"(x) : "memory");
}

}  // namespace bitexact::ops::cuda
