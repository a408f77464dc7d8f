// CPU log-softmax over rows of logits. The sum of exponentials runs in 8 lanes in a fixed order
// (as simd.h's dot), so a row's log-probabilities depend on that row alone.
#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/simd.h"

namespace bitexact::ops::cpu {

void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out) {
  const int64_t V = logits.dim(1);
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  pool.parallel_for(logits.dim(0), 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits.ptr<float>() + r * logits.stride[0];
      float* o = out.ptr<float>() + r * out.stride[0];
      float mx = -INFINITY;
      for (int64_t i = 0; i < V; ++i) mx = std::max(mx, x[i]);
      float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = 0; i < V; ++i) lanes[i & 7] += std::exp(x[i] - mx);
      float lse = mx + std::log(reduce_lanes(lanes));
      for (int64_t i = 0; i < V; ++i) o[i] = x[i] - lse;
    }
  });
}

}  // namespace bitexact::ops::cpu
