// The integer top-p / min-p filters (ops/sample_filter.h) and the CPU sample_tokens op's use of
// them: filter_weight's accuracy against exp, the exact threshold arithmetic against 128-bit
// integers, the kept prefix against a brute-force reading of the definition, boundary cases
// (ties summing exactly to the threshold, NaN / -inf rows), and the op's support equal to the
// kept prefix. The CUDA op is held to the CPU op bit for bit in
// ops/cuda/tests/sample_filter_cuda_test.cu; engine/tests/sampler_test.cc holds the host
// sampler to the CPU op.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "ops/sample_filter.h"
#include "ops/top_key.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

// Brute force over the sorted row: keep the prefix through the first i whose cumulative weight
// times 2^32 reaches P times the total (128-bit products, no ceil), after min_p.
int64_t brute_keep(const std::vector<float>& sorted, float T, uint64_t P, uint64_t M) {
  const int64_t n = int64_t(sorted.size());
  std::vector<uint64_t> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = filter::filter_weight_of(sorted[size_t(i)], sorted[0], T);
  int64_t keep = n;
  if (M) {
    keep = 0;
    while (keep < n && w[size_t(keep)] >= M) ++keep;
    keep = std::max<int64_t>(keep, 1);
  }
  if (P) {
    unsigned __int128 total = 0, cum = 0;
    for (int64_t i = 0; i < keep; ++i) total += w[size_t(i)];
    int64_t i = 0;
    do cum += w[size_t(i++)];
    while (i < keep && (cum << 32) < total * P);
    keep = i;
  }
  return keep;
}

int32_t draw(const std::vector<float>& row, SampleRow p) {
  const int64_t V = int64_t(row.size());
  ExecContext ctx;
  int32_t id = -1;
  float lp = 0;
  Tensor x = Tensor::view(const_cast<float*>(row.data()), DType::kF32, {1, V});
  Tensor pt = Tensor::view(&p, DType::kI32, {1, kSampleRowWords});
  Tensor it = Tensor::view(&id, DType::kI32, {1}), lt = Tensor::view(&lp, DType::kF32, {1});
  sample_tokens(ctx, x, pt, it, lt, 0);
  return id;
}

}  // namespace

TEST(SampleFilter, WeightIsExpToAFewUlps) {
  EXPECT_EQ(filter::filter_weight(0.0f), uint64_t(1) << 40);
  EXPECT_EQ(filter::filter_weight(-0.0f), uint64_t(1) << 40);
  EXPECT_EQ(filter::filter_weight(1.5f), uint64_t(1) << 40);  // q > 0 is taken as 0
  EXPECT_EQ(filter::filter_weight(-INFINITY), 0u);
  EXPECT_EQ(filter::filter_weight(NAN), 0u);
  EXPECT_EQ(filter::filter_weight(-30.0f), 0u);
  std::mt19937 g(3);
  std::uniform_real_distribution<float> u(-29.9f, 0.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float q = i < 1000 ? -float(i) * 0.0299f : u(g);
    const double ref = std::ldexp(std::exp(double(q)), 40);
    const double got = double(filter::filter_weight(q));
    // got = trunc(2^40 e^q (1 + d)), |d| a few 2^-24: within 1 + 2^-21 relative, plus truncation
    EXPECT_LE(std::fabs(got - ref), ref * 4.8e-7 + 1.0) << "q=" << q;
    if (ref > 1e9) worst = std::max(worst, std::fabs(got - ref) / ref);  // truncation negligible
  }
  EXPECT_LT(worst, 2.4e-7);  // 4 ulps
  std::printf("filter_weight: worst relative error %.3g (f32 ulp 5.96e-8)\n", worst);
}

TEST(SampleFilter, UnitsAndThresholdAreExact) {
  EXPECT_EQ(filter::top_p_units(1.0), 0u);
  EXPECT_EQ(filter::top_p_units(0.5), uint64_t(1) << 31);
  EXPECT_EQ(filter::top_p_units(0.9), uint64_t(std::ceil(0.9 * 4294967296.0)));
  EXPECT_EQ(filter::top_p_units(1e-300), 1u);
  EXPECT_EQ(filter::min_p_units(0.0), 0u);
  EXPECT_EQ(filter::min_p_units(1.0), uint64_t(1) << 40);
  EXPECT_EQ(filter::min_p_units(0.05), uint64_t(std::ceil(0.05 * 1099511627776.0)));
  std::mt19937_64 g(5);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t total = i % 3 == 0 ? g() >> 1 : g() >> (g() % 64);  // up to 2^63
    const uint64_t P = i % 5 == 0 ? uint64_t(1) << 32 : (g() >> 32) + (i % 2);
    const unsigned __int128 prod = (unsigned __int128)total * P;
    const uint64_t want = uint64_t((prod + 0xffffffffu) >> 32);
    ASSERT_EQ(filter::top_p_threshold(total, P), want) << total << " " << P;
  }
}

// filter_sorted (the host's walk, shared by Sampler and the CPU op) against brute_keep on random
// sorted rows, flat and peaked, with ties, -inf and NaN tails.
TEST(SampleFilter, KeptPrefixMatchesTheDefinition) {
  std::mt19937 g(11);
  int cut = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 1 + int64_t(g() % 3000);
    std::normal_distribution<float> nd(0.0f, std::vector<float>{0.2f, 1.0f, 3.0f, 8.0f}[size_t(trial % 4)]);
    std::vector<float> row(static_cast<size_t>(n));
    for (auto& x : row) x = trial % 7 == 0 ? float(int(nd(g)) % 3) : nd(g);
    if (trial % 11 == 0) row[size_t(n - 1)] = -INFINITY;
    std::sort(row.begin(), row.end(), std::greater<float>());
    if (trial % 13 == 0) row.push_back(NAN);  // NaN sorts last
    const float T = std::vector<float>{1.0f, 0.7f, 0.3f, 2.0f}[size_t(trial % 4)];
    const uint64_t P = filter::top_p_units(std::vector<double>{1.0, 0.9, 0.5, 0.99, 0.1}[size_t(trial % 5)]);
    const uint64_t M = filter::min_p_units(std::vector<double>{0.0, 0.0, 0.05, 0.3}[size_t(trial / 4 % 4)]);
    std::vector<uint64_t> w(row.size());
    const int64_t got = filter::filter_sorted(int64_t(row.size()), T, P, M, w.data(),
                                              [&](int64_t i) { return row[size_t(i)]; });
    ASSERT_EQ(got, brute_keep(row, T, P, M)) << "trial " << trial;
    cut += got < int64_t(row.size());
  }
  EXPECT_GT(cut, 200);
}

// Four tied best tokens (W = 2^40 each, total 2^42): top_p = 0.5 reaches the threshold exactly at
// the second, so exactly two are kept, the two lowest ids; one unit less weight on the second
// (a perturbed definition) would keep three. min_p = 1 keeps every tie of the best.
TEST(SampleFilter, ExactBoundaryKeepsLowestIdsOfATie) {
  std::vector<float> row(64, -40.0f);
  for (int t : {9, 3, 40, 17}) row[size_t(t)] = 2.0f;
  std::vector<float> sorted = row;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  std::vector<uint64_t> w(sorted.size());
  auto lg = [&](int64_t i) { return sorted[size_t(i)]; };
  EXPECT_EQ(filter::filter_sorted(64, 1.0f, filter::top_p_units(0.5), 0, w.data(), lg), 2);
  EXPECT_EQ(filter::top_p_threshold(uint64_t(4) << 40, filter::top_p_units(0.5)), uint64_t(2) << 40);
  EXPECT_EQ(filter::filter_sorted(64, 1.0f, filter::top_p_units(0.5) + 1, 0, w.data(), lg), 3);
  EXPECT_EQ(filter::filter_sorted(64, 1.0f, 0, filter::min_p_units(1.0), w.data(), lg), 4);
  std::set<int32_t> half, all;
  for (uint64_t idx = 0; idx < 300; ++idx) {
    half.insert(draw(row, SampleRow{1.0f, 0, 7, idx, filter::top_p_units(0.5), 0}));
    all.insert(draw(row, SampleRow{1.0f, 0, 7, idx, 0, filter::min_p_units(1.0)}));
  }
  EXPECT_EQ(half, (std::set<int32_t>{3, 9}));
  EXPECT_EQ(all, (std::set<int32_t>{3, 9, 17, 40}));
}

// The op's draws over many token indices stay inside the kept prefix and cover it (a small one).
TEST(SampleFilter, OpDrawsFromTheKeptPrefix) {
  std::mt19937 g(21);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> row(5000);
  for (auto& x : row) x = nd(g);
  std::vector<int32_t> order(row.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int32_t(i);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return top_key(row[size_t(a)], a) > top_key(row[size_t(b)], b); });
  for (auto [tp, mp, k] : {std::tuple{0.3, 0.0, 0}, std::tuple{1.0, 0.2, 0}, std::tuple{0.6, 0.1, 4}}) {
    const uint64_t P = filter::top_p_units(tp), M = filter::min_p_units(mp);
    std::vector<uint64_t> w(order.size());
    const int64_t n = k ? k : int64_t(order.size());
    const int64_t keep = filter::filter_sorted(n, 0.8f, P, M, w.data(),
                                               [&](int64_t i) { return row[size_t(order[size_t(i)])]; });
    ASSERT_GT(keep, 1);
    ASSERT_LT(keep, 40);
    std::set<int32_t> want(order.begin(), order.begin() + keep), got;
    for (uint64_t idx = 0; idx < 2000; ++idx) got.insert(draw(row, SampleRow{0.8f, k, 3, idx, P, M}));
    EXPECT_EQ(got, want) << "top_p " << tp << " min_p " << mp << " k " << k;
  }
}

TEST(SampleFilter, OpRejectsBadUnits) {
  std::vector<float> row(8, 0.0f);
  EXPECT_THROW(draw(row, SampleRow{1.0f, 0, 1, 1, (uint64_t(1) << 32) + 1, 0}), Error);
  EXPECT_THROW(draw(row, SampleRow{1.0f, 0, 1, 1, 0, (uint64_t(1) << 40) + 1}), Error);
  EXPECT_NO_THROW(draw(row, SampleRow{1.0f, 9, 1, 1, uint64_t(1) << 32, uint64_t(1) << 40}));
}
