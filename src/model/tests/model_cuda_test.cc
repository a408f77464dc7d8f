// The model on CUDA (run on the GPU machine): the tiny transformers fixtures give the CPU
// engine's logits within tolerance and its greedy tokens; a request's tokens and logprobs are
// bitwise equal alone and inside batches (invariant mode) and differ in non-invariant mode;
// prefill and token-by-token decode give the same bits (I6).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/batch_generator.h"
#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "model/tests/sequence_runner.h"
#include "ops/cuda/cuda_ops.h"

using namespace bitexact;
using namespace bitexact::model;

namespace {

const std::string kSrc = BITEXACT_SOURCE_DIR;

struct Runner : test_support::SequenceRunner {
  Runner(const std::string& path, Device device, bool invariant = true, bool dummy = false)
      : SequenceRunner(path, options(device, invariant, dummy)) {}
  static ModelOptions options(Device device, bool invariant, bool dummy) {
    ModelOptions o;
    o.device = device;
    o.batch_invariant = invariant;
    o.dummy_weights = dummy;
    o.max_positions = 4096;
    return o;
  }
};

class CudaModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ops::cuda::init_cuda_backend(0); }
};

// bf16 activations on the GPU against f32 activations on the CPU, same weights: each op rounds
// to 8 mantissa bits (2^-9 relative), compounded over the layers: logits agree to about 1e-2
// of their norm. Greedy tokens of these random models are compared as well; with
// near_tie > 0, a prompt whose CPU top-2 logits are closer than near_tie is not compared (dummy
// weights give flat logits, where a bf16 rounding may legitimately swap the top two).
void compare_with_cpu(const std::string& dir, const std::vector<std::vector<int32_t>>& prompts, bool dummy,
                      const std::string& fixture, float near_tie = 0.0f, double tolerance = 2e-2) {
  Runner cpu(dir, Device::kCpu, true, dummy), gpu(dir, Device::kCuda, true, dummy);
  double num = 0, den = 0;
  int greedy_equal = 0, greedy_total = 0;
  for (const std::vector<int32_t>& prompt : prompts) {
    std::vector<float> a = cpu.step(prompt, 0), b = gpu.step(prompt, 0);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(std::isfinite(b[i]));
      num += (a[i] - b[i]) * double(a[i] - b[i]);
      den += double(a[i]) * a[i];
    }
    const int64_t V = cpu.model->config().vocab_size;
    const float* la = a.data() + a.size() - V;
    const float* lb = b.data() + b.size() - V;
    if (near_tie > 0) {
      std::vector<float> top(la, la + V);
      std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
      if (top[0] - top[1] < near_tie) continue;
    }
    greedy_equal += std::max_element(la, la + V) - la == std::max_element(lb, lb + V) - lb;
    ++greedy_total;
  }
  double rel = std::sqrt(num / den);
  std::printf("%s: |gpu - cpu| / |cpu| = %.3g, next-token argmax equal %d/%d\n", fixture.c_str(), rel,
              greedy_equal, greedy_total);
  EXPECT_LT(rel, tolerance);
  EXPECT_EQ(greedy_equal, greedy_total);
  EXPECT_GE(2 * greedy_total, int(prompts.size()));  // most prompts are not near ties
}

void compare_with_cpu(const std::string& fixture) {
  const std::string dir = kSrc + "/fixtures/" + fixture;
  nlohmann::json ref = nlohmann::json::parse(std::ifstream(dir + "/reference.json"));
  compare_with_cpu(dir, ref["prompts"].get<std::vector<std::vector<int32_t>>>(), false, fixture);
}

// A small qwen3_moe shape the CUDA attention takes (head_dim 64; the MoE fixtures have 16): 32
// experts top-4 renormalised, a dense layer (mlp_only_layers), for dummy weights (the same bf16
// values on CPU and GPU). Written once to a temporary folder.
const std::string& moe_small_config() {
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() / ("bitexact_moe_small_" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(d);
    nlohmann::json j = {{"architectures", {"Qwen3MoeForCausalLM"}}, {"model_type", "qwen3_moe"},
                        {"vocab_size", 8192}, {"hidden_size", 512}, {"intermediate_size", 1024},
                        {"moe_intermediate_size", 256}, {"num_experts", 32}, {"num_experts_per_tok", 4},
                        {"norm_topk_prob", true}, {"mlp_only_layers", {1}}, {"num_hidden_layers", 4},
                        {"num_attention_heads", 8}, {"num_key_value_heads", 4}, {"head_dim", 64},
                        {"max_position_embeddings", 4096}, {"rope_theta", 1000000.0},
                        {"tie_word_embeddings", false}};
    std::ofstream(d + "/config.json") << j.dump();
    return d;
  }();
  return dir;
}

// The needle (needle_len tokens) alone vs among others/2..others short prompts.
int batch_divergences(const std::string& path, bool dummy, bool invariant, int trials, int needle_len = 90,
                      int others = 33) {
  ModelOptions o;
  o.device = Device::kCuda;
  o.batch_invariant = invariant;
  o.dummy_weights = dummy;
  o.max_positions = 4096;
  auto m = Model::load(path, o);
  engine::BatchGenerator gen(*m, 1024, 16, {});
  std::mt19937 g(99);
  auto prompt = [&](int lo, int hi) {
    std::vector<int32_t> p(size_t(lo + int(g() % unsigned(hi - lo + 1))));
    for (auto& t : p) t = 3 + int32_t(g() % 1000);
    return p;
  };
  engine::GenerateRequest needle{prompt(needle_len - 60, needle_len + 60), {}};
  needle.params.max_tokens = 8;
  needle.params.temperature = 0.7;
  needle.params.seed = 5;
  needle.params.ignore_eos = true;
  auto solo = gen.generate({needle})[0];
  int diverged = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<engine::GenerateRequest> batch;
    int n_others = others / 2 + int(g() % unsigned(others / 2 + 1));  // N/2..N others
    for (int i = 0; i < n_others; ++i) batch.push_back({prompt(1, 150), needle.params});
    size_t at = g() % (batch.size() + 1);
    batch.insert(batch.begin() + long(at), needle);
    auto o = gen.generate(batch)[at];
    diverged += o.token_ids != solo.token_ids ||
                std::memcmp(o.logprobs.data(), solo.logprobs.data(), 4 * solo.logprobs.size()) != 0;
  }
  return diverged;
}

}  // namespace

TEST_F(CudaModel, Qwen3Bf16MatchesCpu) { compare_with_cpu("qwen3-tiny-bf16"); }
// The bf16 MoE fixture made by transformers: GPU vs the CPU engine (which matches transformers).
TEST_F(CudaModel, Qwen3MoeBf16FixtureMatchesCpu) { compare_with_cpu("qwen3moe-tiny-bf16"); }

// qwen3_moe: the GPU against the CPU engine on the same (dummy) weights. Routing sees bf16
// router logits on the GPU and f32 on the CPU, so a near-tie may pick another expert for a token
// (a few percent of tokens per sparse layer with these flat dummy weights): 5e-2 of the logits'
// norm instead of the dense 2e-2. Next-token argmax is compared where the CPU's top two differ
// by 0.02 or more (several times the rms logit error).
TEST_F(CudaModel, Qwen3MoeSmallMatchesCpu) {
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 12; ++p) {
    prompts.emplace_back();
    for (int i = 0; i < 1 + 23 * p; ++i) prompts.back().push_back(3 + (i * 7919 + p * 131) % 8000);
  }
  compare_with_cpu(moe_small_config(), prompts, true, "qwen3moe-small (dummy)", 0.02f, 5e-2);
}
// Batch invariance of the MoE model (needle among 16-33 others: prefill steps route thousands of
// rows, so both tile heights of the expert GEMM run), and the non-invariant mode is detected.
TEST_F(CudaModel, BatchInvariantQwen3MoeSmall) {
  EXPECT_EQ(batch_divergences(moe_small_config(), true, true, 4), 0);
}
TEST_F(CudaModel, Qwen3MoeNonInvariantModeIsDetected) {
  EXPECT_GT(batch_divergences(moe_small_config(), true, false, 2, 600, 48), 0);
}
// The real Qwen3-30B-A3B shapes (128 experts, top-8; about 61 GB of bf16 dummy weights).
TEST_F(CudaModel, BatchInvariantQwen3_30B_A3BShape) {
  EXPECT_EQ(batch_divergences(kSrc + "/configs/qwen3-30b-a3b", true, true, 2), 0);
}
// The other fixtures have head_dim 16 and 32; the CUDA attention kernels take 64 and 128 (every
// Qwen3 and Llama size), so only the head_dim-64 fixture runs on the GPU.

TEST_F(CudaModel, BatchInvariantTinyQwen3) {
  EXPECT_EQ(batch_divergences(kSrc + "/fixtures/qwen3-tiny-bf16", false, true, 6), 0);
}
TEST_F(CudaModel, BatchInvariantQwen3_0_6BShape) {
  EXPECT_EQ(batch_divergences(kSrc + "/configs/qwen3-0.6b", true, true, 4), 0);
}
// The fast kernels only change their reduction order when the batch is big enough to matter
// (cuBLASLt's choice; split-KV once the grid fills the GPU): a 2500-token needle among 24-48
// others. The invariant kernels must still give equal bits there.
TEST_F(CudaModel, LongNeedleInvariantMode) {
  EXPECT_EQ(batch_divergences(kSrc + "/configs/qwen3-0.6b", true, true, 2, 2500, 48), 0);
}
TEST_F(CudaModel, NonInvariantModeIsDetected) {
  EXPECT_GT(batch_divergences(kSrc + "/configs/qwen3-0.6b", true, false, 2, 2500, 48), 0);
}

// I6: a token's logits are the same whether it was computed in a prefill of the whole prompt
// or decoded one token at a time over the KV cache.
int prefill_decode_mismatches(const std::string& path) {
  Runner a(path, Device::kCuda, true, true);
  const int64_t V = a.model->config().vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 300; ++i) prompt.push_back(3 + int32_t((i * 7919) % std::min<int64_t>(150000, V - 3)));
  std::vector<float> all = a.step(prompt, 0);
  int mismatched_rows = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    std::vector<float> one = a.step({prompt[i]}, int(i));
    mismatched_rows += std::memcmp(one.data(), all.data() + i * size_t(V), size_t(V) * 4) != 0;
  }
  return mismatched_rows;
}
TEST_F(CudaModel, PrefillEqualsDecode) { EXPECT_EQ(prefill_decode_mismatches(kSrc + "/configs/qwen3-0.6b"), 0); }
// qwen3_moe: the 300-token prefill routes 1200 rows to 32 experts (64-row expert tiles), each
// decode step 4 rows (16-row tiles): the two tile heights must give equal bits.
TEST_F(CudaModel, Qwen3MoePrefillEqualsDecode) { EXPECT_EQ(prefill_decode_mismatches(moe_small_config()), 0); }

// I7: decode steps replayed from CUDA graphs (with padding rows: 3 requests run in a bucket of
// 4) give the same tokens and logprobs as eager execution.
TEST_F(CudaModel, GraphReplayEqualsEager) {
  std::vector<engine::GenerateOutput> outs[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    ModelOptions o;
    o.device = Device::kCuda;
    o.dummy_weights = true;
    o.max_positions = 4096;
    o.cuda_graphs = graphs == 1;
    auto m = Model::load(kSrc + "/configs/qwen3-0.6b", o);
    engine::BatchGenerator gen(*m, 64, 16, {});
    std::vector<engine::GenerateRequest> reqs;
    for (int r = 0; r < 3; ++r) {
      engine::GenerateRequest q;
      for (int i = 0; i < 40 + 30 * r; ++i) q.prompt.push_back(3 + (i * 31 + r * 7) % 150000);
      q.params.max_tokens = 24;
      q.params.temperature = 0.8;
      q.params.seed = 11 + r;
      q.params.ignore_eos = true;
      reqs.push_back(q);
    }
    outs[graphs] = gen.generate(reqs);
  }
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(outs[0][r].token_ids, outs[1][r].token_ids) << r;
    EXPECT_EQ(0, std::memcmp(outs[0][r].logprobs.data(), outs[1][r].logprobs.data(), 4 * outs[0][r].logprobs.size()));
  }
}

// The serving pattern that once broke graphs: a bucket-1 graph is captured, then a batch of 64
// warms up a larger bucket (growing the GEMM split-K and attention scratch buffers), then the
// bucket-1 graph replays again. Graph runs must equal eager runs bit for bit, greedy rows on the
// device path and sampled rows on the host path alike.
TEST_F(CudaModel, EngineGraphsEqualEagerAcrossBuckets) {
  std::map<std::string, std::pair<std::vector<int32_t>, std::vector<float>>> outs[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    ModelOptions o;
    o.device = Device::kCuda;
    o.dummy_weights = true;
    o.max_positions = 2048;
    o.cuda_graphs = graphs == 1;
    auto m = Model::load(kSrc + "/configs/qwen3-0.6b", o);
    engine::EngineConfig ec;
    ec.max_num_seqs = 64;
    ec.num_kv_blocks = 1024;
    engine::Engine e(*m, nullptr, ec);
    auto add = [&](const std::string& id, int len, int max_tokens, double temperature) {
      engine::RequestSpec r;
      r.id = id;
      for (int i = 0; i < len; ++i) r.prompt.push_back(3 + (i * 31 + int(id.size()) * 7 + len) % 150000);
      r.params.max_tokens = max_tokens;
      r.params.temperature = temperature;
      r.params.seed = 5;
      r.params.logprobs = 2;
      r.params.ignore_eos = true;
      e.add_request(r);
    };
    auto drain = [&](int steps) {
      for (int i = 0; i < steps && e.has_unfinished(); ++i)
        for (auto& ro : e.step())
          for (auto& d : ro.samples) {
            auto& [toks, lps] = outs[graphs][ro.id];
            toks.insert(toks.end(), d.token_ids.begin(), d.token_ids.end());
            for (auto& lp : d.logprobs) lps.push_back(lp.logprob);
          }
    };
    add("long", 20, 60, 0.0);
    drain(6);  // bucket 1 captured and replayed
    for (int r = 0; r < 63; ++r) add("b" + std::to_string(r), 10 + r, 6, r % 2 ? 0.0 : 0.9);
    drain(1000);  // buckets up to 64, then "long" alone on bucket 1 again
  }
  ASSERT_EQ(outs[0].size(), 64u);
  for (auto& [id, v] : outs[0]) {
    EXPECT_EQ(v.first, outs[1][id].first) << id;
    EXPECT_EQ(0, std::memcmp(v.second.data(), outs[1][id].second.data(), 4 * v.second.size())) << id;
  }
}

// Top-k + top-p / min-p rows on CUDA (bf16 logits): the device draw (ops::sample_tokens with its
// integer filters) gives the same tokens and logprob bits as the host sampler on the copied
// vocabulary rows (device_greedy off), in one mixed batch with greedy, device-drawn and full-row
// requests.
TEST_F(CudaModel, EngineFilteredRowsEqualHostSampler) {
  std::map<std::string, std::pair<std::vector<int32_t>, std::vector<engine::TokenLogprob>>> outs[2];
  ModelOptions o;
  o.device = Device::kCuda;
  o.dummy_weights = true;
  o.max_positions = 2048;
  auto m = Model::load(kSrc + "/configs/qwen3-0.6b", o);
  for (int device = 0; device < 2; ++device) {
    engine::EngineConfig ec;
    ec.max_num_seqs = 64;
    ec.num_kv_blocks = 512;
    ec.device_greedy = device == 1;
    engine::Engine e(*m, nullptr, ec);
    int j = 0;
    for (int k : {1, 5, 20, 32})
      for (double top_p : {1.0, 0.95, 0.5})
        for (double min_p : {0.0, 0.1}) {
          engine::RequestSpec r;
          r.id = std::to_string(j);
          for (int i = 0; i < 12 + j; ++i) r.prompt.push_back(3 + (i * 31 + j * 7) % 150000);
          r.params.max_tokens = 12;
          r.params.temperature = j % 2 ? 0.6 : 1.0;
          r.params.top_k = k, r.params.top_p = top_p, r.params.min_p = min_p;
          r.params.logprobs = j % 3 ? 5 : 0;
          r.params.seed = uint64_t(100 + j++);
          r.params.ignore_eos = true;
          e.add_request(r);
        }
    for (double t : {0.0, 0.8, 0.6}) {  // greedy; plain temperature; top_p without top_k (full row)
      engine::RequestSpec r;
      r.id = "x" + std::to_string(j);
      for (int i = 0; i < 20; ++i) r.prompt.push_back(5 + (i * 17 + j) % 150000);
      r.params.max_tokens = 12;
      r.params.temperature = t;
      if (t == 0.6) r.params.top_p = 0.95;
      r.params.logprobs = 3;
      r.params.seed = uint64_t(j++);
      r.params.ignore_eos = true;
      e.add_request(r);
    }
    while (e.has_unfinished())
      for (auto& ro : e.step())
        for (auto& d : ro.samples) {
          auto& [toks, lps] = outs[device][ro.id];
          toks.insert(toks.end(), d.token_ids.begin(), d.token_ids.end());
          lps.insert(lps.end(), d.logprobs.begin(), d.logprobs.end());
        }
  }
  ASSERT_EQ(outs[0].size(), 27u);
  int sampled = 0;
  for (auto& [id, v] : outs[0]) {
    const auto& d = outs[1][id];
    EXPECT_EQ(v.first, d.first) << id;
    ASSERT_EQ(v.second.size(), d.second.size()) << id;
    for (size_t i = 0; i < v.second.size(); ++i) {
      EXPECT_EQ(0, std::memcmp(&v.second[i].logprob, &d.second[i].logprob, 4)) << id << " " << i;
      EXPECT_EQ(v.second[i].top, d.second[i].top) << id << " " << i;
      if (!v.second[i].top.empty() && v.second[i].token != v.second[i].top[0].first) ++sampled;
    }
  }
  EXPECT_GT(sampled, 10);  // the rows really sample
}
