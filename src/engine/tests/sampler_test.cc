// Sampler unit tests: greedy ties, top-k/top-p/min-p supports, seeds and logprobs, and the
// exponential race's distribution, determinism, ties, and equality with ops::sample_tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/error.h"
#include "engine/sampler.h"
#include "ops/ops.h"
#include "ops/sample_filter.h"

using namespace bitexact::engine;

TEST(Sampler, GreedyBreaksTiesToLowestId) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  std::vector<float> logits = {0.5f, 2.0f, 1.0f, 2.0f};
  EXPECT_EQ(s.sample(logits, p, 1, 0).token, 1);
  std::vector<int32_t> banned = {1};
  EXPECT_EQ(s.sample(logits, p, 1, 0, banned).token, 3);
}

TEST(Sampler, LogprobsAreTheRawLogSoftmax) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 2;
  std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  SampleResult r = s.sample(logits, p, 1, 0);
  double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(r.logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].first, 1);
  EXPECT_EQ(r.top[1].first, 2);
}

TEST(Sampler, SeedAndIndexDetermineTheDraw) {
  Sampler s;
  SamplingParams p;
  p.temperature = 1.0;
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 1.7f);
  std::map<int, int> seen;
  for (uint64_t idx = 0; idx < 200; ++idx) {
    int a = s.sample(logits, p, 77, idx).token;
    EXPECT_EQ(a, s.sample(logits, p, 77, idx).token);
    seen[a]++;
  }
  EXPECT_GT(seen.size(), 10u);  // it really samples
}

TEST(Sampler, TopKTopPMinPRestrictTheSupport) {
  Sampler s;
  std::vector<float> logits = {5.0f, 4.0f, 3.0f, 0.0f, -1.0f, -2.0f};
  SamplingParams k;
  k.top_k = 2;
  SamplingParams tp;
  tp.top_p = 0.5;  // token 0 alone holds ~0.66 of the mass
  SamplingParams mp;
  mp.min_p = 0.3;  // keeps tokens with p >= 0.3 * p0: 0 and 1 (e^-1 = 0.37)
  for (uint64_t i = 0; i < 300; ++i) {
    EXPECT_LT(s.sample(logits, k, 3, i).token, 2);
    EXPECT_EQ(s.sample(logits, tp, 3, i).token, 0);
    EXPECT_LT(s.sample(logits, mp, 3, i).token, 2);
  }
}

TEST(Sampler, PenaltiesFollowVllmOrderAndKeepRawLogprobs) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 0;
  std::vector<float> logits = {2.0f, 1.9f, -1.0f, 0.5f};
  const std::vector<int32_t> prompt = {0}, output = {1, 1};
  // No penalty: token 0.
  EXPECT_EQ(s.sample(logits, p, 1, 0, {}, nullptr, {prompt, output}).token, 0);
  // Repetition 2 (prompt and output): 0 -> 1.0, 1 -> 0.95; token 3 (0.5) stays below.
  p.repetition_penalty = 2.0;
  SampleResult r = s.sample(logits, p, 1, 0, {}, nullptr, {prompt, output});
  EXPECT_EQ(r.token, 0);
  // The reported logprob is the raw distribution's, not the penalised one's.
  const double lse = std::log(std::exp(2.0) + std::exp(1.9) + std::exp(-1.0) + std::exp(0.5));
  EXPECT_NEAR(r.logprob, 2.0 - lse, 1e-6);
  // Frequency counts output occurrences: token 0 seen twice, 2 - 2 * 1.0 = 0 < 1.9.
  p.repetition_penalty = 1.0;
  p.frequency_penalty = 1.0;
  EXPECT_EQ(s.sample(logits, p, 1, 0, {}, nullptr, {{}, std::vector<int32_t>{0, 0}}).token, 1);
  // Presence subtracts once however often a token was seen: 2 - 1.6 = 0.4 < 1.9; with 1 seen
  // too (0.3), token 3 (0.5) wins.
  p.frequency_penalty = 0.0;
  p.presence_penalty = 1.6;
  EXPECT_EQ(s.sample(logits, p, 1, 0, {}, nullptr, {{}, std::vector<int32_t>{0, 0}}).token, 1);
  EXPECT_EQ(s.sample(logits, p, 1, 0, {}, nullptr, {{}, std::vector<int32_t>{0, 1}}).token, 3);
  // Presence and frequency ignore prompt tokens.
  EXPECT_EQ(s.sample(logits, p, 1, 0, {}, nullptr, {std::vector<int32_t>{0}, {}}).token, 0);
  // Repetition multiplies negative logits (-1 * 2 = -2 < -1.5) and counts prompt tokens.
  p.presence_penalty = 0.0;
  p.repetition_penalty = 2.0;
  std::vector<float> neg = {-1.0f, -1.5f};
  EXPECT_EQ(s.sample(neg, p, 1, 0, {}, nullptr, {std::vector<int32_t>{0}, {}}).token, 1);  // -2 < -1.5
}

TEST(Sampler, ValidateRejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_THROW(p.validate(), bitexact::Error);
  for (auto set : {+[](SamplingParams& q) { q.presence_penalty = 2.5; }, +[](SamplingParams& q) { q.frequency_penalty = -3; },
                   +[](SamplingParams& q) { q.repetition_penalty = 0; }}) {
    SamplingParams q;
    set(q);
    EXPECT_THROW(q.validate(), bitexact::Error);
  }
  p = {};
  p.temperature = -1;
  EXPECT_THROW(p.validate(), bitexact::Error);
  p = {};
  p.max_tokens = 0;
  EXPECT_THROW(p.validate(), bitexact::Error);
}

// The race draws from softmax(l / T): frequencies of a small known distribution over 200000
// (seed, index) pairs stay within 5 standard deviations (sqrt(p (1 - p) / N) <= 0.0012, so a
// tolerance of 0.006) of the exact probabilities, for plain temperature, a temperature != 1,
// and top_k (renormalised over the k best).
TEST(Sampler, RaceFrequenciesMatchTheDistribution) {
  Sampler s;
  const std::vector<double> probs = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
  std::vector<float> logits;
  for (double p : probs) logits.push_back(float(std::log(p)));
  struct Case {
    double temperature;
    int top_k;
  };
  for (Case c : {Case{1.0, 0}, Case{0.6, 0}, Case{1.7, 0}, Case{1.0, 3}}) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    std::vector<double> want(probs.size());
    double total = 0;
    for (size_t i = 0; i < probs.size(); ++i)
      if (c.top_k == 0 || int(i) < c.top_k) total += want[i] = std::exp(double(logits[i]) / c.temperature);
    for (double& w : want) w /= total;
    const int N = 200000;
    std::vector<int> count(probs.size());
    for (int i = 0; i < N; ++i) ++count[size_t(s.sample(logits, p, uint64_t(i / 50), uint64_t(i % 50)).token)];
    for (size_t i = 0; i < probs.size(); ++i)
      EXPECT_NEAR(double(count[i]) / N, want[i], 0.006) << "T=" << c.temperature << " k=" << c.top_k << " token " << i;
  }
}

// Equal logits are drawn equally often, and a draw does not depend on the token ids' positions:
// the race is a function of (logit, id, seed, index) per token.
TEST(Sampler, RaceIsDeterministicAndFairBetweenTies) {
  Sampler s;
  SamplingParams p;
  p.temperature = 1.0;
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f, -30.0f};
  std::vector<int> count(5);
  for (uint64_t i = 0; i < 40000; ++i) {
    const int32_t t = s.sample(logits, p, 5, i).token;
    ASSERT_EQ(t, s.sample(logits, p, 5, i).token);  // same (seed, index): same token
    ++count[size_t(t)];
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(count[size_t(i)] / 40000.0, 0.25, 0.012) << i;
  EXPECT_EQ(count[4], 0);
  // Another seed gives another sequence.
  int same = 0;
  for (uint64_t i = 0; i < 200; ++i) same += s.sample(logits, p, 5, i).token == s.sample(logits, p, 6, i).token;
  EXPECT_LT(same, 120);
  // Banning a token leaves every other token's draw where it was unless the banned one won.
  std::vector<int32_t> banned = {2};
  for (uint64_t i = 0; i < 500; ++i) {
    const int32_t free = s.sample(logits, p, 5, i).token, b = s.sample(logits, p, 5, i, banned).token;
    EXPECT_NE(b, 2);
    if (free != 2) {
      EXPECT_EQ(b, free);
    }
  }
}

// Greedy ties go to the lowest id (the race's keys do the same for equal scores).
TEST(Sampler, GreedyTieAndTinyTemperature) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  std::vector<float> logits = {0.0f, 3.0f, 3.0f, 1.0f};
  EXPECT_EQ(s.sample(logits, p, 1, 0).token, 1);
  // A temperature just above greedy: the race picks one of the two maxima, never another token.
  p.temperature = 2e-5;
  std::vector<int> count(4);
  for (uint64_t i = 0; i < 2000; ++i) ++count[size_t(s.sample(logits, p, 1, i).token)];
  EXPECT_EQ(count[0] + count[3], 0);
  EXPECT_GT(count[1], 800);
  EXPECT_GT(count[2], 800);
}

// Sampler::sample and ops::sample_tokens (CPU) make the same draw and report the same logprob
// bits, with and without top_k, top_p, min_p (the filters of ops/sample_filter.h): one algorithm
// whichever path computes it. Flat rows (sd 0.3: a nucleus of thousands) and peaked ones.
TEST(Sampler, EqualsTheSampleTokensOp) {
  const int64_t V = 4099;
  std::mt19937 g(8);
  Sampler s;
  bitexact::ops::ExecContext ctx;
  int filtered = 0;
  for (int trial = 0; trial < 240; ++trial) {
    std::normal_distribution<float> nd(0.0f, trial % 3 == 0 ? 0.3f : 2.5f);
    std::vector<float> row(static_cast<size_t>(V)), lp(static_cast<size_t>(V));
    for (float& x : row) x = nd(g);
    if (trial % 17 == 0)
      for (int64_t i = 0; i < V; i += 5) row[size_t(i)] = -INFINITY;
    bitexact::Tensor x = bitexact::Tensor::view(row.data(), bitexact::DType::kF32, {1, V});
    bitexact::Tensor lpt = bitexact::Tensor::view(lp.data(), bitexact::DType::kF32, {1, V});
    bitexact::ops::log_softmax(ctx, x, lpt);
    SamplingParams p;
    p.temperature = std::vector<double>{1.0, 0.3, 0.8, 2.0}[size_t(trial % 4)];
    p.top_k = std::vector<int>{0, 1, 7, 32, 0, 50}[size_t(trial % 6)];
    p.top_p = std::vector<double>{1.0, 0.9, 0.5, 0.99, 1.0, 0.7, 0.95}[size_t(trial % 7)];
    p.min_p = std::vector<double>{0.0, 0.0, 0.05, 0.0, 0.2}[size_t(trial / 7 % 5)];
    filtered += p.top_p < 1.0 || p.min_p > 0.0;
    const uint64_t seed = g(), idx = g() % 100;
    const SampleResult h = s.sample(row, p, seed, idx, {}, lp.data());
    bitexact::ops::SampleRow prm{float(p.temperature), p.top_k, seed, idx,
                                 bitexact::ops::filter::top_p_units(p.top_p),
                                 bitexact::ops::filter::min_p_units(p.min_p)};
    int32_t id = -1;
    float lpv = 0;
    bitexact::Tensor pt = bitexact::Tensor::view(&prm, bitexact::DType::kI32, {1, bitexact::ops::kSampleRowWords});
    bitexact::Tensor it = bitexact::Tensor::view(&id, bitexact::DType::kI32, {1});
    bitexact::Tensor lt = bitexact::Tensor::view(&lpv, bitexact::DType::kF32, {1});
    bitexact::ops::sample_tokens(ctx, x, pt, it, lt);
    ASSERT_EQ(id, h.token) << "trial " << trial;
    EXPECT_EQ(std::memcmp(&lpv, &h.logprob, 4), 0) << "trial " << trial;
  }
  EXPECT_GT(filtered, 150);
}
