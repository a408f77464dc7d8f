// Tensor parallelism emulated on CPU threads (issue #8): layouts partition the model, shards hold
// the checkpoint's values, and TP = 1 (fixed 8-part split), 2, 4 and 8 give equal logits, bit
// for bit, on every tiny fixture (dense, tied, GQA with uneven head splits, bf16 weights, MoE),
// each still matching transformers. And the same comparison with a TP-dependent fold (one
// partial per rank, as an all-reduce adds) must find a difference, or it proves nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/tests/sequence_runner.h"
#include "model/tp_shard.h"

using namespace bitexact;
using namespace bitexact::model;

namespace {

const std::string kFixtures = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/";
const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";
const std::vector<std::string> kDense = {"qwen3-tiny-f32-tied", "qwen3-tiny-f32-untied",
                                         "llama-tiny-f32", "qwen3-tiny-bf16"};
const std::vector<std::string> kMoe = {"qwen3moe-tiny-top2", "qwen3moe-tiny-top8"};

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(std::ifstream(kFixtures + name + "/reference.json"));
}

// Everything a run shows: prefill logits of every prompt row, then greedy decode steps.
struct Trace {
  std::vector<float> logits;
  std::vector<std::vector<int32_t>> greedy;
};

Trace trace(const std::string& path, const std::vector<std::vector<int32_t>>& prompts, int tp,
            std::optional<bool> invariant, int steps = 6) {
  ModelOptions o;
  o.tensor_parallel_size = tp;
  o.tp_invariant = invariant;
  test_support::SequenceRunner run(path, o);
  const int64_t V = run.model->config().vocab_size;
  Trace t;
  for (const auto& prompt : prompts) {
    std::vector<float> l = run.step(prompt, 0);
    t.logits.insert(t.logits.end(), l.begin(), l.end());
    std::vector<int32_t> out;
    int pos = int(prompt.size());
    for (int i = 0; i < steps; ++i) {
      const float* last = l.data() + l.size() - V;
      out.push_back(int32_t(std::max_element(last, last + V) - last));
      l = run.step({out.back()}, pos++);
      t.logits.insert(t.logits.end(), l.begin(), l.end());
    }
    t.greedy.push_back(out);
  }
  return t;
}

bool same_bits(const Trace& a, const Trace& b) {
  return a.greedy == b.greedy && a.logits.size() == b.logits.size() &&
         std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * 4) == 0;
}

std::vector<std::vector<int32_t>> prompts_of(const std::string& name) {
  return reference(name)["prompts"].get<std::vector<std::vector<int32_t>>>();
}

// TP = 1 with the split, then 2, 4, 8: all equal to the first, bit for bit.
void expect_tp_invariant(const std::string& path,
                         const std::vector<std::vector<int32_t>>& prompts) {
  Trace base = trace(path, prompts, 1, true);
  for (int tp : {2, 4, 8})
    EXPECT_TRUE(same_bits(base, trace(path, prompts, tp, std::nullopt))) << path << " tp=" << tp;
}

// Prefill logits at TP = 8 against transformers' reference (model_test's tolerance), and its
// greedy tokens: the sharded math is the model's math, not only self-consistent.
void expect_matches_transformers(const std::string& name, int tp) {
  nlohmann::json ref = reference(name);
  const auto& r = ref["references"]["f32"];
  const int64_t V = r["vocab"];
  std::vector<float> expected(r["rows"].get<size_t>() * size_t(V));
  std::ifstream f(kFixtures + name + "/" + r["logits_file"].get<std::string>(), std::ios::binary);
  f.read(reinterpret_cast<char*>(expected.data()), std::streamsize(expected.size() * 4));
  ASSERT_TRUE(f.good());
  ModelOptions o;
  o.tensor_parallel_size = tp;
  test_support::SequenceRunner run(kFixtures + name, o);
  double worst = 0;
  size_t row = 0;
  for (size_t p = 0; p < ref["prompts"].size(); ++p) {
    std::vector<int32_t> prompt = ref["prompts"][p].get<std::vector<int32_t>>();
    std::vector<float> got = run.step(prompt, 0);
    for (size_t i = 0; i < got.size(); ++i) {
      double e = expected[row * size_t(V) + i];
      worst = std::max(worst, std::abs(got[i] - e) / (1.0 + std::abs(e)));
    }
    row += prompt.size();
    EXPECT_EQ(run.greedy(prompt, 16), r["greedy"][p].get<std::vector<int32_t>>())
        << name << " prompt " << p;
  }
  EXPECT_LT(worst, 1e-5) << name << " tp=" << tp;
}

}  // namespace

// Every rank's K parts, heads, intermediate columns and vocabulary rows: the parts partition
// [0, 8), each rank's heads cover its o_proj K range in whole GQA groups, vocab shards partition V.
TEST(TpLayout, PartitionsEveryFixture) {
  std::vector<std::string> names = kDense;
  names.insert(names.end(), kMoe.begin(), kMoe.end());
  for (const std::string& name : names) {
    io::ModelConfig c = io::load_model_config(kFixtures + name + "/config.json");
    const int64_t Ko = c.num_attention_heads * c.head_dim,
                  g = c.num_attention_heads / c.num_key_value_heads;
    for (int size : {1, 2, 4, 8}) {
      int next_part = 0;
      int64_t next_vocab = 0, next_i = 0;
      for (int r = 0; r < size; ++r) {
        TpLayout L = make_tp_layout(c, r, size, kTpParts);
        EXPECT_EQ(L.part_begin(), next_part);
        next_part += L.part_count();
        const int64_t k_lo = tp_part_edge(Ko, L.part_begin(), kTpParts);
        const int64_t k_hi = tp_part_edge(Ko, L.part_begin() + L.part_count(), kTpParts);
        EXPECT_EQ(L.q_begin % g, 0);
        EXPECT_EQ(L.q_end % g, 0);
        EXPECT_LE(L.q_begin * c.head_dim, k_lo);
        EXPECT_GE(L.q_end * c.head_dim, k_hi);
        EXPECT_EQ(L.o_offset, k_lo - L.q_begin * c.head_dim);
        EXPECT_EQ((L.q_end - L.q_begin) / g, L.kv_end - L.kv_begin);
        EXPECT_EQ(L.i_begin, next_i);
        next_i = L.i_end;
        EXPECT_EQ(L.v_begin, next_vocab);
        next_vocab = L.v_end;
        EXPECT_LE(L.v_end - L.v_begin, L.vocab_rows);
        EXPECT_EQ(L.vocab_rows % 8, 0);
      }
      EXPECT_EQ(next_part, kTpParts) << name << " size " << size;
      EXPECT_EQ(next_i, c.intermediate_size);
      EXPECT_EQ(next_vocab, c.vocab_size);
    }
  }
}

TEST(TpLayout, RejectsDegreesThatDoNotDivideTheSplit) {
  io::ModelConfig c = io::load_model_config(kFixtures + "qwen3-tiny-f32-tied/config.json");
  EXPECT_THROW(make_tp_layout(c, 0, 3, kTpParts), Error);
  ModelOptions o;
  o.tensor_parallel_size = 3;
  EXPECT_THROW(Model::load(kFixtures + "qwen3-tiny-f32-tied", o), Error);
}

// Shards are copies: the o_proj parts side by side are the o_proj, vocab shards stacked are the
// embedding (then zero padding), a rank's q rows are the model's q rows of its heads.
TEST(TpShard, ShardsHoldTheCheckpointValues) {
  ModelWeights full = load_weights(kFixtures + "qwen3-tiny-f32-untied", Device::kCpu);
  const io::ModelConfig& c = full.config;
  const int64_t H = c.hidden_size, Ko = c.num_attention_heads * c.head_dim;
  const float* wo = full.layers[1].wo.ptr<float>();
  const float* embed = full.embed.ptr<float>();
  for (int size : {1, 4}) {
    for (int r = 0; r < size; ++r) {
      TpRankWeights s = shard_weights(full, make_tp_layout(c, r, size, kTpParts), Device::kCpu);
      const TpLayout& L = s.layout;
      for (int j = 0; j < L.part_count(); ++j) {
        const int p = L.part_begin() + j;
        const int64_t kb = tp_part_edge(Ko, p, kTpParts),
                      kw = tp_part_edge(Ko, p + 1, kTpParts) - kb;
        const Tensor& part = s.wo_parts[1][size_t(j)];
        ASSERT_EQ(part.dim(0), H);
        ASSERT_EQ(part.dim(1), kw);
        for (int64_t n = 0; n < H; ++n)
          ASSERT_EQ(0, std::memcmp(part.ptr<float>() + n * kw, wo + n * Ko + kb, size_t(kw) * 4));
      }
      const float* e = s.weights.embed.ptr<float>();
      const int64_t rows = L.v_end - L.v_begin;
      ASSERT_EQ(0, std::memcmp(e, embed + L.v_begin * H, size_t(rows * H) * 4));
      for (int64_t i = rows * H; i < L.vocab_rows * H; ++i) ASSERT_EQ(e[i], 0.0f);
      const float* q = s.weights.layers[0].wqkv.ptr<float>();
      const float* fq = full.layers[0].wqkv.ptr<float>();
      ASSERT_EQ(0, std::memcmp(q, fq + L.q_begin * c.head_dim * H,
                               size_t((L.q_end - L.q_begin) * c.head_dim * H) * 4));
    }
  }
}

TEST(TensorParallel, DenseFixturesEqualAcrossDegrees) {
  for (const std::string& name : kDense) expect_tp_invariant(kFixtures + name, prompts_of(name));
}

TEST(TensorParallel, MoeFixturesEqualAcrossDegrees) {
  for (const std::string& name : kMoe) expect_tp_invariant(kFixtures + name, prompts_of(name));
}

// stories260K: a real GGUF llama (interleaved rope) with intermediate 172 = uneven K parts.
TEST(TensorParallel, StoriesEqualAcrossDegrees) {
  expect_tp_invariant(kStories, {{1, 403, 407, 263, 31}, {1, 300, 251, 263, 93, 292, 27, 471, 2}});
}

TEST(TensorParallel, ShardedModelStillMatchesTransformers) {
  for (const char* name : {"qwen3-tiny-f32-tied", "llama-tiny-f32", "qwen3moe-tiny-top8"})
    expect_matches_transformers(name, 8);
}

// The fixed split is what makes the degrees agree. Replaced by one partial per rank folded in
// rank order (what an all-reduce computes, with an order tied to the degree), the very same
// comparison sees differences between TP = 1, 2 and 4.
TEST(TensorParallel, TpDependentFoldIsDetected) {
  const std::string name = "qwen3-tiny-f32-untied";
  const std::string path = kFixtures + name;
  auto prompts = prompts_of(name);
  Trace plain = trace(path, prompts, 1, false), tp2 = trace(path, prompts, 2, false),
        tp4 = trace(path, prompts, 4, false);
  EXPECT_FALSE(same_bits(plain, tp2));
  EXPECT_FALSE(same_bits(tp2, tp4));
  // And the split at TP = 1 is not the unsplit GEMM either: the default at TP = 1 is a choice.
  EXPECT_FALSE(same_bits(plain, trace(path, prompts, 1, true)));
}

// A cache sized for the unsharded model is refused with a message naming kv_cache_heads(), and
// the group stays usable; a token outside the vocabulary is refused before any rank starts.
TEST(TensorParallel, BadInputsAreClearErrors) {
  const std::string path = kFixtures + "qwen3-tiny-f32-tied";
  ModelOptions o;
  o.tensor_parallel_size = 8;
  test_support::SequenceRunner good(path, o);
  auto m = Model::load(path, o);
  const io::ModelConfig& c = m->config();
  ASSERT_GT(m->kv_cache_heads(), c.num_key_value_heads);  // 8 ranks share 2 KV heads: replicated
  kv::KvCache wrong(kv::KvCacheShape{int(c.num_hidden_layers), 4, 16, int(c.num_key_value_heads),
                                     int(c.head_dim)},
                    Device::kCpu, m->kv_dtype());
  std::vector<LayerKv> layers;
  for (int l = 0; l < c.num_hidden_layers; ++l) layers.push_back({wrong.k(l), wrong.v(l)});
  ForwardBatch b;
  b.token_ids = {5};
  b.positions = {0};
  b.token_seq = {0};
  b.slots = {0};
  b.block_table = {0};
  b.num_seqs = 1;
  b.max_blocks = 1;
  b.logit_rows = {0};
  std::vector<float> logits;
  try {
    m->forward(b, layers, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("kv_cache_heads"), std::string::npos) << e.what();
  }
  b.token_ids = {int32_t(c.vocab_size)};
  EXPECT_THROW(good.model->forward(b, good.layers, logits), Error);
  std::vector<float> first = good.step({1, 2, 3}, 0);
  EXPECT_EQ(first.size(), size_t(3 * c.vocab_size));
}
