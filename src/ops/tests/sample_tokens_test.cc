// The exponential race (ops/sample_race.h) and the CPU sample_tokens op: race_log's accuracy
// against std::log, the exponential's accuracy, the host scan's pruning (it must never change the
// winner), greedy / top-k semantics, logprob bits, and row invariance. The CUDA op is compared to
// this one bit for bit in ops/cuda/tests/sample_tokens_cuda_test.cu.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "ops/sample_race.h"
#include "ops/tests/cpu_test_util.h"
#include "ops/top_key.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

// |got - log(x)| in units of the f32 ulp at log(x).
double log_ulps(float x) {
  const double ref = std::log(double(x));
  const float got = race::race_log(x);
  const double ulp = ref == 0 ? std::ldexp(1.0, -149) : std::ldexp(1.0, std::ilogb(float(ref)) - 23);
  return std::fabs(double(got) - ref) / ulp;
}

// The race winner scoring every candidate (no pruning): what race_row must equal.
int32_t brute_race(const std::vector<float>& l, const std::vector<int32_t>& cand, float T, uint64_t seed,
                   uint64_t idx) {
  int32_t best = cand[0];
  for (int32_t c : cand)
    if (top_key(l[size_t(c)], c) > top_key(l[size_t(best)], best)) best = c;
  const float mx = l[size_t(best)];
  uint64_t top = 0;
  int32_t win = best;
  for (int32_t c : cand) {
    uint32_t w[4];
    race::race_words(seed, idx, uint32_t(c) >> 2, w);
    const uint64_t k = race::race_key(race::race_score(race::race_scaled(l[size_t(c)], mx, T), w[c & 3]), c);
    if (k > top) top = k, win = c;
  }
  return win;
}

struct Out {
  std::vector<int32_t> ids;
  std::vector<float> lps;
};

Out run(const std::vector<float>& logits, int64_t V, std::vector<SampleRow> prm) {
  const int64_t R = int64_t(prm.size());
  Out o{std::vector<int32_t>(size_t(R), -7), std::vector<float>(size_t(R), NAN)};
  ExecContext ctx;
  Tensor x = Tensor::view(const_cast<float*>(logits.data()), DType::kF32, {R, V});
  Tensor p = Tensor::view(prm.data(), DType::kI32, {R, kSampleRowWords});
  Tensor ids = Tensor::view(o.ids.data(), DType::kI32, {R});
  Tensor lps = Tensor::view(o.lps.data(), DType::kF32, {R});
  sample_tokens(ctx, x, p, ids, lps);
  return o;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

TEST(SampleRace, LogIsAccurateToAFewUlps) {
  std::mt19937 g(1);
  double worst = 0;
  float worst_x = 0;
  auto check = [&](float x) {
    const double e = log_ulps(x);
    if (e > worst) worst = e, worst_x = x;
  };
  for (int i = 0; i < 2000000; ++i) {  // every exponent, normal and subnormal, random mantissas
    const uint32_t u = g() % 0x7f800000u;
    if (u != 0) check(race::bits_f32(u));
  }
  for (int i = 1; i < 200000; ++i) {  // near 1, where log is small and relative error shows
    check(1.0f + float(i) * 0x1p-23f);
    check(1.0f - float(i) * 0x1p-24f);
  }
  std::printf("race_log: max error %.3f ulp at x = %a\n", worst, double(worst_x));
  EXPECT_LE(worst, 4.0);
  EXPECT_EQ(race::race_log(1.0f), 0.0f);
  EXPECT_EQ(race::race_log(0.0f), -INFINITY);
  EXPECT_EQ(race::race_log(-0.0f), -INFINITY);
  EXPECT_EQ(race::race_log(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(race::race_log(-1.0f)));
  EXPECT_TRUE(std::isnan(race::race_log(NAN)));
}

TEST(SampleRace, ExponentialIsAccurateAndBounded) {
  std::mt19937 g(2);
  double worst = 0;
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t w = i < 1000 ? uint32_t(i) : i < 2000 ? 0xffffffffu - uint32_t(i - 1000) : g();
    const float v = race::race_uniform(w);
    ASSERT_GT(v, 0.0f);
    ASSERT_LE(v, 1.0f);
    const float e = race::race_exponential(v);
    if (v < 1.0f) {
      const double ref = -std::log1p(-double(v));
      worst = std::max(worst, std::fabs(double(e) - ref) / ref);
    }
    // The pruning bound: -log(E) never exceeds it (so skipping a token never changes a draw).
    const float noise = -race::race_log(e);
    ASSERT_LE(noise, race::race_noise_bound(v)) << "w=" << w;
    ASSERT_LE(race::race_noise_bound(v), race::kRaceMaxNoise);
  }
  std::printf("race_exponential: max relative error %.3g\n", worst);
  EXPECT_LT(worst, 1e-6);
}

TEST(SampleRace, KeysBreakTiesToTheLowestId) {
  EXPECT_GT(race::race_key(0.5f, 3), race::race_key(0.5f, 5));
  EXPECT_GT(race::race_key(0.5f, 9), race::race_key(0.25f, 1));
  EXPECT_GT(race::race_key(-INFINITY, 9), race::race_key(NAN, 1));  // NaN scores never win
}

TEST(SampleRace, PruningNeverChangesTheWinner) {
  std::mt19937 g(3);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t V = 1 + int64_t(g() % 3000);
    const float scale = trial % 3 == 0 ? 0.1f : trial % 3 == 1 ? 3.0f : 30.0f;
    std::vector<float> l = test::randn(size_t(V), uint32_t(trial), scale);
    if (trial % 7 == 0) l[size_t(g() % V)] = -INFINITY;
    if (trial % 11 == 0) l[size_t(g() % V)] = NAN;
    const float T = trial % 4 == 0 ? 0.05f : trial % 4 == 1 ? 0.7f : trial % 4 == 2 ? 1.0f : 5.0f;
    const uint64_t seed = g(), idx = g() % 1000;
    std::vector<int32_t> all(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) all[size_t(i)] = int32_t(i);
    const int32_t want = brute_race(l, all, T, seed, idx);
    int32_t best = 0;
    for (int32_t i = 0; i < V; ++i)
      if (top_key(l[size_t(i)], i) > top_key(l[size_t(best)], best)) best = i;
    const race::RaceHostRow rr{l.data(), V, T, seed, idx};
    ASSERT_EQ(race::race_row(rr, nullptr, best), want) << "trial " << trial;
    // A shuffled candidate list gives the same winner (the race does not depend on order).
    std::vector<int32_t> cand(all.begin(), all.begin() + std::min<int64_t>(V, 40));
    std::shuffle(cand.begin(), cand.end(), g);
    int32_t cbest = cand[0];
    for (int32_t c : cand)
      if (top_key(l[size_t(c)], c) > top_key(l[size_t(cbest)], cbest)) cbest = c;
    ASSERT_EQ(race::race_candidates(rr, cand.data(), int64_t(cand.size()), cbest), brute_race(l, cand, T, seed, idx));
  }
}

TEST(SampleTokensCpu, GreedyTopKAndLogprobBits) {
  const int64_t V = 5000;
  const int R = 40;
  std::vector<float> logits = test::randn(size_t(R * V), 5, 4.0f);
  std::vector<SampleRow> prm(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r)
    prm[size_t(r)] = {r % 4 == 0 ? 0.0f : 0.3f * float(r % 5 + 1), r % 3 == 0 ? 0 : r % 3 == 1 ? 1 + r % 32 : 0,
                      uint64_t(1000 + r), uint64_t(r * 7)};
  const Out o = run(logits, V, prm);
  std::vector<float> lp(logits.size());
  ExecContext ctx;
  Tensor x = Tensor::view(logits.data(), DType::kF32, {R, V}), lpt = Tensor::view(lp.data(), DType::kF32, {R, V});
  log_softmax(ctx, x, lpt);
  std::vector<int32_t> tid(size_t(R) * 32);
  std::vector<float> tval(tid.size());
  Tensor ti = Tensor::view(tid.data(), DType::kI32, {R, 32}), tv = Tensor::view(tval.data(), DType::kF32, {R, 32});
  top_tokens(ctx, x, ti, tv);
  for (int r = 0; r < R; ++r) {
    const SampleRow& p = prm[size_t(r)];
    const int32_t t = o.ids[size_t(r)];
    ASSERT_GE(t, 0);
    ASSERT_LT(t, V);
    EXPECT_EQ(bits(o.lps[size_t(r)]), bits(lp[size_t(r * V + t)])) << "row " << r;
    if (p.temperature == 0.0f) {
      EXPECT_EQ(t, tid[size_t(r) * 32]) << "row " << r;
    }
    if (p.temperature > 0.0f && p.top_k > 0) {
      bool in = false;
      for (int j = 0; j < p.top_k; ++j) in = in || tid[size_t(r) * 32 + size_t(j)] == t;
      EXPECT_TRUE(in) << "row " << r << " drew " << t << " outside its top-" << p.top_k;
    }
    if (p.temperature > 0.0f) {  // the op's draw is the race of sample_race.h
      std::vector<int32_t> cand;
      if (p.top_k > 0) {
        cand.assign(tid.begin() + r * 32, tid.begin() + r * 32 + p.top_k);
      } else {
        for (int32_t i = 0; i < V; ++i) cand.push_back(i);
      }
      std::vector<float> row(logits.begin() + r * V, logits.begin() + (r + 1) * V);
      EXPECT_EQ(t, brute_race(row, cand, p.temperature, p.seed, p.token_index)) << "row " << r;
    }
  }
  // top_k >= V is no filter.
  const int64_t small_v = 20;
  std::vector<float> s(logits.begin(), logits.begin() + small_v);
  for (uint64_t idx = 0; idx < 50; ++idx)
    EXPECT_EQ(run(s, small_v, {{1.0f, 32, 9, idx}}).ids[0], run(s, small_v, {{1.0f, 0, 9, idx}}).ids[0]);
}

// A row's token and logprob are the same alone and inside a batch of 64 rows of other logits and
// parameters (every row independent).
TEST(SampleTokensCpu, RowsAreBatchInvariant) {
  const int64_t V = 3001;
  const int R = 64;
  std::vector<float> batch = test::randn(size_t(R * V), 11, 2.0f);
  std::vector<SampleRow> prm(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) prm[size_t(r)] = {r % 5 == 0 ? 0.0f : 0.9f, r % 2 ? 5 : 0, uint64_t(r), uint64_t(3 * r)};
  const Out all = run(batch, V, prm);
  for (int r = 0; r < R; ++r) {
    std::vector<float> row(batch.begin() + r * V, batch.begin() + (r + 1) * V);
    const Out one = run(row, V, {prm[size_t(r)]});
    EXPECT_EQ(one.ids[0], all.ids[size_t(r)]) << "row " << r;
    EXPECT_EQ(bits(one.lps[0]), bits(all.lps[size_t(r)])) << "row " << r;
  }
}

TEST(SampleTokensCpu, RejectsBadParameters) {
  std::vector<float> l = {1, 2, 3};
  EXPECT_THROW(run(l, 3, {{-1.0f, 0, 0, 0}}), Error);
  EXPECT_THROW(run(l, 3, {{NAN, 0, 0, 0}}), Error);
  EXPECT_THROW(run(l, 3, {{1.0f, -1, 0, 0}}), Error);
  // A row's top_k above max_top_k is valid (the CUDA backend draws it by radix select); a
  // max_top_k above kMaxSampleTopK is not.
  std::vector<SampleRow> prm = {{1.0f, 3, 0, 0}};
  std::vector<int32_t> id(1);
  std::vector<float> lp(1);
  ExecContext ctx;
  Tensor x = Tensor::view(l.data(), DType::kF32, {1, 3}), p = Tensor::view(prm.data(), DType::kI32, {1, kSampleRowWords});
  Tensor it = Tensor::view(id.data(), DType::kI32, {1}), lt = Tensor::view(lp.data(), DType::kF32, {1});
  EXPECT_NO_THROW(sample_tokens(ctx, x, p, it, lt, 2));
  EXPECT_THROW(sample_tokens(ctx, x, p, it, lt, kMaxSampleTopK + 1), Error);
  EXPECT_NO_THROW(run(l, 3, {{1.0f, kMaxSampleTopK + 1, 0, 0}}));
}
