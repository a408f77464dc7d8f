// CPU RMSNorm and fused residual-add + RMSNorm. The sum of squares of a row is a fixed-order
// dot(x, x), so a row's output depends on that row alone.
#include <cmath>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/rows.h"
#include "ops/cpu/simd.h"

namespace bitexact::ops::cpu {
namespace {

template <typename W>
void norm_row(const float* x, const W* w, int64_t d, float eps, float* out) {
  float ss = dot(x, x, d);
  // As Hugging Face: x * rsqrt(mean(x^2) + eps), then weight * that.
  float inv = 1.0f / std::sqrt(ss / float(d) + eps);
  for (int64_t i = 0; i < d; ++i) out[i] = to_f32(w[i]) * (x[i] * inv);
}

template <typename W>
void rms_norm_typed(const ExecContext& ctx, const Tensor& x, const W* w, float eps, Tensor& out) {
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  const int64_t d = x.dim(-1);
  pool.parallel_for(num_rows(x), 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) norm_row(row_ptr<float>(x, r), w, d, eps, row_ptr<float>(out, r));
  });
}

template <typename F>
void with_weight(const Tensor& w, F&& f) {
  switch (w.dtype) {
    case DType::kF32: return f(w.ptr<float>());
    case DType::kBF16: return f(w.ptr<Bf16>());
    case DType::kF16: return f(w.ptr<F16>());
    default: fail(ErrorKind::kUnsupported, "rms_norm: weight dtype " + std::string(dtype_name(w.dtype)));
  }
}

}  // namespace

void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  with_weight(weight, [&](auto* w) { rms_norm_typed(ctx, x, w, eps, out); });
}

void add_rms_norm(const ExecContext& ctx, Tensor& residual, const Tensor& x, const Tensor& weight,
                  float eps, Tensor& out) {
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  const int64_t d = residual.dim(-1);
  pool.parallel_for(num_rows(residual), 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* res = row_ptr<float>(residual, r);
      const float* xr = row_ptr<float>(x, r);
      for (int64_t i = 0; i < d; ++i) res[i] += xr[i];
    }
  });
  cpu::rms_norm(ctx, residual, weight, eps, out);
}

}  // namespace bitexact::ops::cpu
