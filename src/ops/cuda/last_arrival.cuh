// The arrival semaphore of the split folds (split-K GEMM, sliced top-k / log-sum-exp / sampling):
// each CTA publishes its partial, then counts itself in with an integer atomic (no float atomics
// anywhere); the last of n to arrive folds every partial in a fixed order, so which CTA arrives
// last never reaches the arithmetic.
#pragma once

namespace bitexact::ops::cuda {

// Call after this CTA's partial stores, from every thread. Returns (to every thread) whether this
// CTA is the last of `n` arrivals at *counter, and then resets the counter for the next launch.
// The fences order the partial stores before the count, and the count before the last CTA's
// reads of the others' partials (read them through L2: ld.cg / __ldcg).
__device__ __forceinline__ bool last_to_arrive(int* counter, int n) {
  __shared__ int last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1) == n - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  const bool is_last = last != 0;
  if (is_last) __threadfence();
  return is_last;
}

}  // namespace bitexact::ops::cuda
