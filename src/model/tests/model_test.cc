// The model against Hugging Face transformers: tiny random checkpoints (fixtures/, made by
// scripts/fixtures/make_fixtures.py) give logits within tolerance and equal greedy tokens; and
// the real stories260K GGUF continues "Once upon a time" as documented.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "model/model.h"
#include "model/tests/sequence_runner.h"

using namespace bitexact;
using namespace bitexact::model;

namespace {

const std::string kFixtures = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/";

struct Runner : test_support::SequenceRunner {
  explicit Runner(const std::string& path) : SequenceRunner(path, {}) {}
};

std::vector<float> read_f32(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> v(n);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * 4));
  EXPECT_TRUE(f.good()) << path;
  return v;
}

void check_fixture(const std::string& name, double tolerance) {
  const std::string dir = kFixtures + name;
  nlohmann::json ref = nlohmann::json::parse(std::ifstream(dir + "/reference.json"));
  const auto& r = ref["references"]["f32"];
  const int64_t V = r["vocab"];
  std::vector<float> expected = read_f32(dir + "/" + r["logits_file"].get<std::string>(), size_t(r["rows"]) * V);
  Runner run(dir);
  size_t row = 0;
  double worst = 0;
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    std::vector<int32_t> prompt = ref["prompts"][p].get<std::vector<int32_t>>();
    std::vector<float> got = run.step(prompt, 0);
    for (size_t i = 0; i < got.size(); ++i) {
      double e = expected[row * V + i];
      worst = std::max(worst, std::abs(got[i] - e) / (1.0 + std::abs(e)));
    }
    row += prompt.size();
    EXPECT_EQ(run.greedy(prompt, 16), r["greedy"][p].get<std::vector<int32_t>>()) << name << " prompt " << p;
  }
  EXPECT_LT(worst, tolerance) << name;
  std::printf("%s: max |logit - HF| / (1 + |HF|) = %.3g\n", name.c_str(), worst);
}

}  // namespace

// f32 checkpoints vs transformers in f32 on CPU: both accumulate in f32 but in different orders
// (and libm vs SLEEF exp/cos), so logits agree to a few ulps of their magnitude (7e-7 measured): 1e-5 relative.
TEST(ModelVsTransformers, Qwen3TiedF32) { check_fixture("qwen3-tiny-f32-tied", 1e-5); }
TEST(ModelVsTransformers, Qwen3UntiedF32) { check_fixture("qwen3-tiny-f32-untied", 1e-5); }
TEST(ModelVsTransformers, LlamaF32) { check_fixture("llama-tiny-f32", 1e-5); }
// bf16 weights, computed by us with f32 activations, vs transformers on the same weights upcast
// to f32: the same function, so the same tolerance.
TEST(ModelVsTransformers, Qwen3Bf16WeightsVsF32Reference) { check_fixture("qwen3-tiny-bf16", 1e-5); }
// qwen3_moe: top-2 of 8 experts renormalised; top-8 of 16 unnormalised with a dense layer
// (mlp_only_layers = [1]). Same f32 arithmetic up to summation order (the experts' outputs are
// summed in slot order here, in expert order by transformers): the same tolerance.
TEST(ModelVsTransformers, Qwen3MoeTop2F32) { check_fixture("qwen3moe-tiny-top2", 1e-5); }
TEST(ModelVsTransformers, Qwen3MoeTop8WithDenseLayerF32) { check_fixture("qwen3moe-tiny-top8", 1e-5); }
// bf16 weights, head_dim 64 (so the CUDA engine runs it too), a dense last layer.
TEST(ModelVsTransformers, Qwen3MoeBf16WeightsVsF32Reference) { check_fixture("qwen3moe-tiny-bf16", 1e-5); }

TEST(Stories260K, GreedyContinuationOfOnceUponATime) {
  const std::string path = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";
  Runner run(path);
  std::vector<int32_t> got = run.greedy({1, 403, 407, 261, 378}, 12);
  // Spelled with the file's own vocabulary pieces (SentencePiece: U+2581 is a space), so this
  // does not depend on the tokenizer layer.
  std::vector<std::string> pieces = io::GgufFile::open(path).get_string_array("tokenizer.ggml.tokens");
  std::string text;
  for (int32_t t : got) text += pieces.at(size_t(t));
  for (size_t at; (at = text.find("\xe2\x96\x81")) != std::string::npos;) text.replace(at, 3, " ");
  EXPECT_EQ(text.rfind(", there was a little girl named Lily", 0), 0u) << text;
}
