// Unit tests of core: dtype conversions, tensor views, thread pool coverage, Philox vectors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

using namespace bitexact;

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties go to the even mantissa.
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
}

TEST(DType, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t x = uint16_t(h);
    if ((x & 0x7c00) == 0x7c00 && (x & 0x3ff)) continue;  // NaN payloads are not preserved
    ASSERT_EQ(f32_to_f16(f16_to_f32(x)), x) << h;
  }
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);        // rounds up to inf
  EXPECT_EQ(f32_to_f16(5.9604645e-8f), 0x0001);   // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.9802322e-8f), 0x0000);   // half of it: ties to even (zero)
}

TEST(Tensor, ViewsAndSlices) {
  Buffer b(6 * 4 * sizeof(float), Device::kCpu);
  Tensor t = b.as(DType::kF32, {6, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_TRUE(t.is_contiguous());
  Tensor s = t.slice_rows(2, 5);
  EXPECT_EQ(s.dim(0), 3);
  EXPECT_EQ(s.ptr<float>(), t.ptr<float>() + 8);
  EXPECT_EQ(t.reshape({2, 12}).dim(1), 12);
  EXPECT_THROW(t.reshape({5, 5}), Error);
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 100, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1);
  }
}

TEST(Philox, KnownAnswerVectors) {
  // Random123 known-answer test for philox4x32_10 with zero counter and key.
  auto r = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Philox, UniformIsAPureFunctionOfSeedAndCounter) {
  EXPECT_EQ(philox_uniform(1234, 7), philox_uniform(1234, 7));
  EXPECT_NE(philox_uniform(1234, 7), philox_uniform(1234, 8));
  EXPECT_NE(philox_uniform(1234, 7), philox_uniform(1235, 7));
  EXPECT_NE(philox_uniform(1234, 7, 0), philox_uniform(1234, 7, 1));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = philox_uniform(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}
