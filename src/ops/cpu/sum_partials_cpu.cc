// CPU sum_partials: out[m,n] = ((p0 + p1) + p2) + ... in f32, one accumulator per element.
// Threads split rows; each element's additions are in part order whatever the thread or the
// vector width, so the fold is a function of the partials alone.
#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"

namespace bitexact::ops::cpu {

void sum_partials(const ExecContext& ctx, const Tensor& partials, Tensor& out) {
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  const int64_t P = partials.dim(0), M = partials.dim(1), N = partials.dim(2);
  const float* p = partials.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t ldo = out.stride[0], part = M * N;
  pool.parallel_for(M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* row = o + m * ldo;
      const float* first = p + m * N;
      // Starts from p0 itself, not from 0: 0 + (-0) would turn a -0 partial into +0.
      for (int64_t n = 0; n < N; ++n) row[n] = first[n];
      for (int64_t j = 1; j < P; ++j) {
        const float* pj = first + j * part;
        for (int64_t n = 0; n < N; ++n) row[n] += pj[n];
      }
    }
  });
}

}  // namespace bitexact::ops::cpu
