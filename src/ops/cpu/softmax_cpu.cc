// CPU log-softmax over rows of logits. The sum of exponentials runs in 8 lanes in a fixed order
// (as simd.h's dot), so a row's log-probabilities depend on that row alone. top_logprobs is
// defined as top_tokens of those rows.
#include <algorithm>
#include <cmath>
#include <vector>

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

Tensor f32_rows(const Tensor& logits, std::vector<float>& storage) {
  if (logits.dtype != DType::kBF16) return logits;
  const int64_t R = logits.dim(0), V = logits.dim(1);
  storage.resize(size_t(R * V));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < V; ++i)
      storage[size_t(r * V + i)] = bf16_to_f32(logits.ptr<uint16_t>()[r * logits.stride[0] + i]);
  return Tensor::view(storage.data(), DType::kF32, {R, V});
}

void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals) {
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<float> f32, lp(size_t(R * V));
  Tensor lpt = Tensor::view(lp.data(), DType::kF32, {R, V});
  cpu::log_softmax(ctx, f32_rows(logits, f32), lpt);
  cpu::top_tokens(ctx, lpt, ids, vals);
}

}  // namespace bitexact::ops::cpu
