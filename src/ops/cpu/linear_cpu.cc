// CPU GEMM y[M,N] = x[M,K] * w[N,K]^T. Threads split the output columns; register tiles of
// R rows x C columns give each output element its own 8-lane accumulator stepping K in the order
// of simd.h's dot(), so every element equals dot(x_row, w_col) bit for bit whatever M is.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/simd.h"

namespace bitexact::ops::cpu {
namespace {

// Computes the R x C tile of y at (row0, col0). Bits equal dot() for each element.
template <int R, int C, typename W>
void tile(const float* x, int64_t ldx, const W* w, int64_t K, float* y, int64_t ldy) {
#ifdef BITEXACT_CPU_AVX2
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = load8(w + c * K + k);
    for (int r = 0; r < R; ++r) {
      __m256 xv = load8(x + r * ldx + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if (k < K) {
    int n = int(K - k);
    for (int r = 0; r < R; ++r) {
      __m256 xv = load_partial(x + r * ldx + k, n);
      for (int c = 0; c < C; ++c)
        acc[r][c] = _mm256_fmadd_ps(xv, load_partial(w + c * K + k, n), acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[r * ldy + c] = reduce_lanes(acc[r][c]);
#else
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[r * ldy + c] = dot(x + r * ldx, w + c * K, K);
#endif
}

template <typename W>
void linear_invariant(const Tensor& x, const W* w, Tensor& y, ThreadPool& pool) {
  const int64_t M = x.dim(0), K = x.dim(1), N = y.dim(1);
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const int64_t ldx = x.stride[0], ldy = y.stride[0];
  // Column blocks of 16 per task keep a weight panel in cache while all rows stream over it.
  constexpr int64_t kColBlock = 16;
  int64_t blocks = (N + kColBlock - 1) / kColBlock;
  pool.parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t n0 = b * kColBlock, n1 = std::min(N, n0 + kColBlock);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) {
        int64_t n = n0;
        for (; n + 2 <= n1; n += 2)
          tile<4, 2>(xp + m * ldx, ldx, w + n * K, K, yp + m * ldy + n, ldy);
        for (; n < n1; ++n) tile<4, 1>(xp + m * ldx, ldx, w + n * K, K, yp + m * ldy + n, ldy);
      }
      for (; m < M; ++m) {
        int64_t n = n0;
        for (; n + 4 <= n1; n += 4)
          tile<1, 4>(xp + m * ldx, ldx, w + n * K, K, yp + m * ldy + n, ldy);
        for (; n < n1; ++n) tile<1, 1>(xp + m * ldx, ldx, w + n * K, K, yp + m * ldy + n, ldy);
      }
    }
  });
}

// Non-invariant mode: like cuBLAS at small M, split K into parts when the batch is small and
// add the partial sums. The rounding then depends on M, which is what the invariance tests
// must be able to detect.
template <typename W>
void linear_batch_dependent(const Tensor& x, const W* w, Tensor& y, ThreadPool& pool) {
  const int64_t M = x.dim(0), K = x.dim(1), N = y.dim(1);
  const int splits = (M <= 4 && K >= 64) ? 4 : 1;
  if (splits == 1) return linear_invariant(x, w, y, pool);
  pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.ptr<float>() + m * x.stride[0];
      for (int64_t n = n0; n < n1; ++n) {
        float sum = 0.0f;
        for (int s = 0; s < splits; ++s) {
          int64_t k0 = K * s / splits, k1 = K * (s + 1) / splits;
          sum += dot(xr + k0, w + n * K + k0, k1 - k0);
        }
        y.ptr<float>()[m * y.stride[0] + n] = sum;
      }
    }
  });
}

template <typename W>
void linear_typed(const ExecContext& ctx, const Tensor& x, const W* w, Tensor& y) {
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  if (ctx.batch_invariant) linear_invariant(x, w, y, pool);
  else linear_batch_dependent(x, w, y, pool);
}

}  // namespace

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y) {
  switch (w.dtype) {
    case DType::kF32: return linear_typed(ctx, x, w.ptr<float>(), y);
    case DType::kBF16: return linear_typed(ctx, x, w.ptr<Bf16>(), y);
    case DType::kF16: return linear_typed(ctx, x, w.ptr<F16>(), y);
    default: fail(ErrorKind::kUnsupported, "linear: weight dtype " + std::string(dtype_name(w.dtype)));
  }
}

}  // namespace bitexact::ops::cpu
