// sum_partials on the CPU: every element equals the left-to-right f32 fold p0+p1+...+p(P-1)
// (a scalar reference), bit for bit, for strided output rows and every thread count; -0 stays
// -0; and a different order (a pairwise tree) gives different bits on the same data, so the
// fold order is something the tensor-parallel tests can see.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "ops/ops.h"

using namespace bitexact;

namespace {

std::vector<float> random_partials(int64_t P, int64_t M, int64_t N, uint32_t seed) {
  std::mt19937 g(seed);
  // Wide magnitudes make reassociation visible in the low bits.
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-12, 12);
  std::vector<float> p(size_t(P * M * N));
  for (auto& v : p) v = std::ldexp(mant(g), expo(g));
  return p;
}

float fold_left(const std::vector<float>& p, int64_t P, int64_t part, int64_t i) {
  float acc = p[size_t(i)];
  for (int64_t j = 1; j < P; ++j) acc = acc + p[size_t(j * part + i)];
  return acc;
}

}  // namespace

TEST(SumPartials, EqualsLeftToRightFold) {
  for (int64_t P : {1, 2, 3, 8}) {
    const int64_t M = 7, N = 45, ld = 53;  // strided output rows
    std::vector<float> p = random_partials(P, M, N, uint32_t(P));
    std::vector<float> out(size_t(M * ld), -7.0f);
    Tensor pt = Tensor::view(p.data(), DType::kF32, {P, M, N});
    Tensor ot = Tensor::view(out.data(), DType::kF32, {M, N});
    ot.stride[0] = ld;
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      ops::ExecContext ctx;
      ctx.pool = &pool;
      ops::sum_partials(ctx, pt, ot);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
          float want = fold_left(p, P, M * N, m * N + n);
          ASSERT_EQ(0, std::memcmp(&want, &out[size_t(m * ld + n)], 4))
              << "P=" << P << " m=" << m << " n=" << n;
        }
        for (int64_t n = N; n < ld; ++n)
          ASSERT_EQ(out[size_t(m * ld + n)], -7.0f) << "wrote past the row";
      }
    }
  }
}

TEST(SumPartials, KeepsNegativeZero) {
  std::vector<float> p = {-0.0f, -0.0f};
  float out = 1.0f;
  Tensor pt = Tensor::view(p.data(), DType::kF32, {2, 1, 1});
  Tensor ot = Tensor::view(&out, DType::kF32, {1, 1});
  ops::sum_partials(ops::ExecContext{}, pt, ot);
  EXPECT_TRUE(std::signbit(out));
}

// The property the TP design relies on: the order is visible. A pairwise tree over the same 8
// partials must differ somewhere, or an order change could not be caught by a bit comparison.
TEST(SumPartials, AnotherOrderGivesOtherBits) {
  const int64_t P = 8, M = 16, N = 64;
  std::vector<float> p = random_partials(P, M, N, 99);
  std::vector<float> out(size_t(M * N));
  Tensor pt = Tensor::view(p.data(), DType::kF32, {P, M, N});
  Tensor ot = Tensor::view(out.data(), DType::kF32, {M, N});
  ops::sum_partials(ops::ExecContext{}, pt, ot);
  int differ = 0;
  for (int64_t i = 0; i < M * N; ++i) {
    auto at = [&](int64_t j) { return p[size_t(j * M * N + i)]; };
    float tree = ((at(0) + at(1)) + (at(2) + at(3))) + ((at(4) + at(5)) + (at(6) + at(7)));
    differ += std::memcmp(&tree, &out[size_t(i)], 4) != 0;
  }
  EXPECT_GT(differ, 0);
}

TEST(SumPartials, RejectsMismatchedShapes) {
  std::vector<float> p(2 * 3 * 4), out(3 * 5);
  Tensor pt = Tensor::view(p.data(), DType::kF32, {2, 3, 4});
  Tensor ot = Tensor::view(out.data(), DType::kF32, {3, 5});
  EXPECT_THROW(ops::sum_partials(ops::ExecContext{}, pt, ot), Error);
}
