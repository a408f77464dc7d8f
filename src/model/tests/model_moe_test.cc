// qwen3_moe loading: which layers are sparse (decoder_sparse_step, mlp_only_layers, as
// transformers decides), the experts fused per layer in transformers' gate_up order, dummy
// weights (--load-format dummy) that run, and the Qwen3-30B-A3B shapes of configs/.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/tests/sequence_runner.h"
#include "model/weights.h"

using namespace bitexact;
using namespace bitexact::model;

namespace {

const std::string kSrc = BITEXACT_SOURCE_DIR;

io::ModelConfig moe_config(int layers, int sparse_step, std::vector<int> mlp_only) {
  nlohmann::json j = {{"model_type", "qwen3_moe"},  {"vocab_size", 100},
                      {"hidden_size", 16},          {"intermediate_size", 32},
                      {"moe_intermediate_size", 8}, {"num_experts", 4},
                      {"num_experts_per_tok", 2},   {"num_hidden_layers", layers},
                      {"num_attention_heads", 2},   {"decoder_sparse_step", sparse_step},
                      {"mlp_only_layers", mlp_only}};
  return io::parse_model_config(j.dump(), "test config");
}

}  // namespace

TEST(Qwen3Moe, SparseLayersFollowTransformers) {
  // Qwen3MoeDecoderLayer: sparse iff not in mlp_only_layers and (layer + 1) % step == 0.
  io::ModelConfig c = moe_config(6, 2, {3});
  std::vector<bool> sparse;
  for (int l = 0; l < 6; ++l) sparse.push_back(is_sparse_layer(c, l));
  EXPECT_EQ(sparse, (std::vector<bool>{false, true, false, false, false, true}));
  c = moe_config(3, 1, {});
  for (int l = 0; l < 3; ++l) EXPECT_TRUE(is_sparse_layer(c, l));
  c.arch = io::Architecture::kQwen3;
  EXPECT_FALSE(is_sparse_layer(c, 0));
}

TEST(Qwen3Moe, ExpertsAreFusedInTransformersOrder) {
  const std::string dir = kSrc + "/fixtures/qwen3moe-tiny-top8";
  ModelWeights w = load_weights(dir, Device::kCpu);
  ASSERT_EQ(w.layers.size(), 3u);
  EXPECT_TRUE(w.layers[0].is_moe());
  EXPECT_FALSE(w.layers[1].is_moe());  // mlp_only_layers = [1]
  EXPECT_TRUE(w.layers[2].is_moe());
  EXPECT_EQ(w.layers[1].w_gate_up.shape_str(),
            Tensor::view(nullptr, DType::kF32, {256, 64}).shape_str());
  const LayerWeights& L = w.layers[2];
  EXPECT_EQ(L.router.shape_str(), Tensor::view(nullptr, DType::kF32, {16, 64}).shape_str());
  EXPECT_EQ(L.experts_gate_up.shape_str(),
            Tensor::view(nullptr, DType::kF32, {16, 64, 64}).shape_str());
  EXPECT_EQ(L.experts_down.shape_str(),
            Tensor::view(nullptr, DType::kF32, {16, 64, 32}).shape_str());
  // Expert 11 of layer 2: gate rows, then up rows; down as stored.
  auto ckpt = io::SafetensorsCheckpoint::open(dir);
  const std::string p = "model.layers.2.mlp.experts.11.";
  const size_t part = 32 * 64 * 4;
  const char* gu = static_cast<const char*>(L.experts_gate_up.data) + 11 * 2 * part;
  EXPECT_EQ(0, std::memcmp(gu, ckpt.tensor(p + "gate_proj.weight").data, part));
  EXPECT_EQ(0, std::memcmp(gu + part, ckpt.tensor(p + "up_proj.weight").data, part));
  EXPECT_EQ(0, std::memcmp(static_cast<const char*>(L.experts_down.data) + 11 * part,
                           ckpt.tensor(p + "down_proj.weight").data, part));
}

TEST(Qwen3Moe, DummyWeightsRun) {
  ModelOptions o;
  o.dummy_weights = true;
  test_support::SequenceRunner a(kSrc + "/fixtures/qwen3moe-tiny-top2", o),
      b(kSrc + "/fixtures/qwen3moe-tiny-top2", o);
  EXPECT_EQ(a.model->config().num_experts, 8);
  EXPECT_EQ(a.model->config().num_experts_per_tok, 2);
  std::vector<float> logits = a.step({5, 17, 300, 2000, 9}, 0);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  // Dummy weights are a function of the tensor names: two loads give the same tokens.
  EXPECT_EQ(a.greedy({7, 8, 9}, 6), b.greedy({7, 8, 9}, 6));
}

TEST(Qwen3Moe, Qwen3_30B_A3BConfig) {
  io::ModelConfig c = io::load_model_config(kSrc + "/configs/qwen3-30b-a3b");
  EXPECT_EQ(c.arch, io::Architecture::kQwen3Moe);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 48);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 768);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_TRUE(c.norm_topk_prob);
  for (int l = 0; l < 48; ++l) EXPECT_TRUE(is_sparse_layer(c, l)) << l;
}
