// Sampler unit tests: greedy ties, top-k/top-p/min-p supports, seeds and logprobs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "engine/sampler.h"

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
