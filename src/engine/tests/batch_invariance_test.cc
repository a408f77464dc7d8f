// Batch invariance of the whole engine on CPU (issue: a request alone equals the same request
// inside batches of 2 to 33 others at random positions, greedy and at temperature 0.7 with a
// seed, bit for bit), and the same comparison in non-invariant mode must find a difference.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "engine/batch_generator.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

struct Case {
  std::string model;
  bool invariant;
};

std::vector<int32_t> random_prompt(std::mt19937& g, int vocab, int min_len, int max_len) {
  std::uniform_int_distribution<int> len(min_len, max_len), tok(3, vocab - 1);
  std::vector<int32_t> p(size_t(len(g)));
  for (auto& t : p) t = tok(g);
  return p;
}

bool same_bits(const GenerateOutput& a, const GenerateOutput& b) {
  return a.token_ids == b.token_ids && a.logprobs.size() == b.logprobs.size() &&
         std::memcmp(a.logprobs.data(), b.logprobs.data(), a.logprobs.size() * 4) == 0;
}

// Counts the trials in which the needle's output inside a batch differs from its solo output.
int count_divergences(const std::string& path, bool invariant, double temperature, int trials) {
  model::ModelOptions opt;
  opt.batch_invariant = invariant;
  auto m = model::Model::load(path, opt);
  const int vocab = int(m->config().vocab_size);
  BatchGenerator gen(*m, 34 * 8, 16, {});
  std::mt19937 g(1234);
  GenerateRequest needle{random_prompt(g, vocab, 20, 60), {}};
  needle.params.max_tokens = 12;
  needle.params.temperature = temperature;
  needle.params.seed = 42;
  needle.params.ignore_eos = true;
  GenerateOutput solo = gen.generate({needle})[0];
  int divergences = 0;
  for (int t = 0; t < trials; ++t) {
    int others = 1 + int(g() % 33);  // batches of 2 to 34 requests
    std::vector<GenerateRequest> batch;
    for (int i = 0; i < others; ++i) {
      GenerateRequest r{random_prompt(g, vocab, 1, 60), needle.params};
      r.params.seed = g();
      r.params.max_tokens = 1 + int(g() % 12);
      batch.push_back(r);
    }
    size_t at = g() % (batch.size() + 1);
    batch.insert(batch.begin() + long(at), needle);
    divergences += !same_bits(gen.generate(batch)[at], solo);
  }
  return divergences;
}

const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";
const std::string kQwen3 = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/qwen3-tiny-f32-untied";
const std::string kQwen3Bf16 = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/qwen3-tiny-bf16";

}  // namespace

TEST(BatchInvariance, StoriesGreedy) { EXPECT_EQ(count_divergences(kStories, true, 0.0, 8), 0); }
TEST(BatchInvariance, StoriesSeededTemperature) { EXPECT_EQ(count_divergences(kStories, true, 0.7, 8), 0); }
TEST(BatchInvariance, Qwen3Greedy) { EXPECT_EQ(count_divergences(kQwen3, true, 0.0, 8), 0); }
TEST(BatchInvariance, Qwen3Bf16SeededTemperature) { EXPECT_EQ(count_divergences(kQwen3Bf16, true, 0.7, 8), 0); }

// The same comparison with the batch-dependent kernels must see a difference, or the tests
// above prove nothing.
TEST(BatchInvariance, NonInvariantModeIsDetected) {
  EXPECT_GT(count_divergences(kStories, false, 0.7, 4) + count_divergences(kQwen3, false, 0.7, 4), 0);
}
