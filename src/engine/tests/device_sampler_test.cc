// Temperature rows drawn on the model's device (ForwardBatch::row_sample, ops::sample_tokens,
// with top_k / top_p / min_p) against the host sampler (Sampler::sample on the full logits row), on stories260K (a real vocabulary of 512). On a CPU
// build the model's device is the CPU ops, so this runs in CI; the CUDA op is held to the CPU op
// bit for bit by ops/cuda/tests/sample_tokens_cuda_test.cu and sample_filter_cuda_test.cu.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "engine/engine.h"
#include "engine/tests/stories_fixture.h"
#include "engine/sampler.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "ops/sample_filter.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

using test::fx;
using test::kStories;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// One prefill of a few prompts on a fresh cache; forward(rows) reruns it with the caller's
// per-row output settings.
struct Prefill {
  model::Model& m = *fx().model;
  std::vector<std::string> prompts = {"Once upon a time", "The little dog", "She said", "Tom"};
  model::ForwardBatch b;
  std::unique_ptr<kv::KvCache> cache;
  std::vector<model::LayerKv> layers;
  Prefill() {
    b.num_seqs = int(prompts.size());
    int max_len = 0;
    std::vector<std::vector<int32_t>> toks;
    for (const auto& p : prompts)
      toks.push_back(fx().tok->encode(p, true)),
          max_len = std::max(max_len, int(toks.back().size()));
    const int bs = 16, blocks = (max_len + bs - 1) / bs;
    b.max_blocks = blocks;
    for (int s = 0; s < b.num_seqs; ++s) {
      for (int j = 0; j < blocks; ++j) b.block_table.push_back(1 + s * blocks + j);
      for (int p = 0; p < int(toks[size_t(s)].size()); ++p) {
        b.token_ids.push_back(toks[size_t(s)][size_t(p)]);
        b.positions.push_back(p);
        b.token_seq.push_back(s);
        b.slots.push_back((1 + s * blocks + p / bs) * bs + p % bs);
      }
      b.logit_rows.push_back(b.num_tokens() - 1);
    }
    cache = std::make_unique<kv::KvCache>(
        kv::KvCacheShape{int(m.config().num_hidden_layers), 1 + b.num_seqs * blocks, bs,
                         int(m.kv_cache_heads()), int(m.config().head_dim)},
        m.context().device, m.kv_dtype());
    for (int l = 0; l < int(m.config().num_hidden_layers); ++l)
      layers.push_back({cache->k(l), cache->v(l)});
  }
};

}  // namespace

// One forward of a few prompts: the rows' RowTop from the device draw equals Sampler::sample on
// the same rows' full logits and log-softmax (from a forward with row_top_n = -1), for
// T x top_k (40: above the op's candidates) x top_p x min_p. A perturbed filter (top_p lowered by
// 1/16 on the device only) must change some draw: the comparison sees the filters.
TEST(DeviceSampler, RowTopEqualsSamplerOnTheFullRow) {
  Prefill pf;
  model::Model& m = pf.m;
  model::ForwardBatch& b = pf.b;
  const std::vector<std::string>& prompts = pf.prompts;
  std::vector<model::LayerKv>& layers = pf.layers;
  const int64_t V = m.config().vocab_size;
  std::vector<float> logits, lps;
  std::vector<model::RowTop> tops;
  m.forward(b, layers, logits, &lps);  // full rows: the host sampler's input
  const std::vector<float> full_logits = logits, full_lps = lps;

  Sampler host;
  int drawn = 0, differ_from_greedy = 0, perturbed_differ = 0;
  for (float T : {0.0f, 0.5f, 1.0f, 2.5f})
    for (int k : {0, 1, 3, 32, 40})
      for (double top_p : {1.0, 0.8})
        for (double min_p : {0.0, 0.05})
      for (uint64_t idx : {0u, 1u, 17u}) {
        b.row_top_n.assign(prompts.size(), 2);
        b.row_sample.clear();
        const uint64_t P = ops::filter::top_p_units(top_p), M = ops::filter::min_p_units(min_p);
        for (int s = 0; s < b.num_seqs; ++s)
          b.row_sample.push_back({T, k, uint64_t(100 + s), idx, P, M});
        if (T > 0 && P) {  // the perturbed definition: the same rows, top_p 0.8 - 1/16
          std::vector<ops::SampleRow> bad = b.row_sample;
          for (auto& r : bad) r.top_p_units -= uint64_t(1) << 28;
          std::swap(bad, b.row_sample);
          std::vector<model::RowTop> bad_tops;
          m.forward(b, layers, logits, &lps, &bad_tops);
          std::swap(bad, b.row_sample);
          for (int s = 0; s < b.num_seqs; ++s) {
            SamplingParams p;
            p.temperature = T, p.top_k = k, p.top_p = top_p, p.min_p = min_p, p.logprobs = 2;
            perturbed_differ += bad_tops[size_t(s)].token !=
                                host.sample({full_logits.data() + size_t(s) * size_t(V), size_t(V)}, p,
                                            uint64_t(100 + s), idx, {}, full_lps.data() + size_t(s) * size_t(V))
                                    .token;
          }
        }
        m.forward(b, layers, logits, &lps, &tops);
        ASSERT_EQ(tops.size(), prompts.size());
        for (int s = 0; s < b.num_seqs; ++s) {
          SamplingParams p;
          p.temperature = T;
          p.top_k = k;
          p.top_p = top_p;
          p.min_p = min_p;
          p.logprobs = 2;
          const SampleResult h = host.sample({full_logits.data() + size_t(s) * size_t(V), size_t(V)}, p,
                                             uint64_t(100 + s), idx, {}, full_lps.data() + size_t(s) * size_t(V));
          const model::RowTop& d = tops[size_t(s)];
          ASSERT_EQ(d.token, h.token) << "T=" << T << " k=" << k << " top_p=" << top_p
                                      << " min_p=" << min_p << " idx=" << idx << " row " << s;
          EXPECT_EQ(bits(d.logprob), bits(h.logprob));
          EXPECT_EQ(d.top, h.top);
          ++drawn;
          if (T > 0 && d.token != d.top[0].first) ++differ_from_greedy;
        }
      }
  EXPECT_GT(drawn, 100);
  EXPECT_GT(differ_from_greedy, 10);  // the device rows really sample
  EXPECT_GT(perturbed_differ, 0);     // a changed filter on the device is seen
}

// The engine with device sampling (default) and with every row on the host sampler
// (device_greedy = false) gives the same tokens and logprob bits for temperature rows, with and
// without top_k, top_p, min_p, top_k above ops::kMaxSampleTopK, beside greedy rows and rows that
// must use the host (penalties, min_tokens).
TEST(DeviceSampler, EngineDeviceSamplingEqualsHostSampler) {
  auto run_all = [](bool device) {
    EngineConfig c;
    c.device_greedy = device;
    c.eos_ids = {fx().tok->eos_id().value_or(2)};
    Engine e(*fx().model, fx().tok.get(), c);
    for (int i = 0; i < 12; ++i) {
      RequestSpec r;
      r.id = std::to_string(i);
      r.prompt = fx().tok->encode(i % 2 ? "Once upon a time" : "The little dog", true);
      r.params.max_tokens = 24;
      r.params.ignore_eos = i % 3 == 0;
      r.params.seed = uint64_t(40 + i);
      r.params.logprobs = std::vector<int>{-1, 0, 5, 2, 0, 3, 1, 0, 4, 0, 2, 0}[size_t(i)];
      r.params.temperature = std::vector<double>{1.0, 0.8, 1.0, 0.0, 1.5, 0.7, 1.0, 1.0, 1.0, 1.0, 0.9, 1.0}[size_t(i)];
      r.params.top_k = std::vector<int>{0, 5, 20, 0, 32, 1, 40, 0, 0, 0, 0, 10}[size_t(i)];
      if (i == 7) r.params.top_p = 0.9;
      if (i == 8) r.params.min_p = 0.05;
      if (i == 9) r.params.repetition_penalty = 1.2;
      if (i == 10) r.params.min_tokens = 6;
      if (i == 11) r.n = 3;
      e.add_request(r);
    }
    std::map<std::string, std::map<int, SampleDelta>> acc;
    while (e.has_unfinished())
      for (auto& ro : e.step())
        for (auto& d : ro.samples) {
          SampleDelta& s = acc[ro.id][d.index];
          s.token_ids.insert(s.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
          s.logprobs.insert(s.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
        }
    return acc;
  };
  auto device = run_all(true), host = run_all(false);
  ASSERT_EQ(device.size(), 12u);
  for (auto& [id, samples] : device)
    for (auto& [index, d] : samples) {
      const SampleDelta& h = host.at(id).at(index);
      EXPECT_EQ(d.token_ids, h.token_ids) << id << "/" << index;
      ASSERT_EQ(d.logprobs.size(), h.logprobs.size()) << id;
      for (size_t i = 0; i < d.logprobs.size(); ++i) {
        EXPECT_EQ(d.logprobs[i].token, h.logprobs[i].token);
        EXPECT_EQ(bits(d.logprobs[i].logprob), bits(h.logprobs[i].logprob)) << id << " " << i;
        EXPECT_EQ(d.logprobs[i].top, h.logprobs[i].top) << id << " " << i;
      }
    }
  EXPECT_NE(device.at("0").at(0).token_ids, device.at("2").at(0).token_ids);
}

// The engine with device sampling (device_greedy on: every row without penalties or banned
// tokens is drawn by ops::sample_tokens, filters included) and with every row on the host sampler
// (off) gives the same tokens and logprob bits for the top_k x top_p x min_p grid, logprobs 0
// and 5 and none, beside greedy rows, plain temperature, top_p alone, min_p alone, top_k above
// 32 with top_p or min_p, and rows the host must take whole (a penalty, min_tokens).
TEST(DeviceSampler, EngineFilteredRowsEqualHostSampler) {
  struct Spec {
    double T, top_p, min_p;
    int top_k, logprobs;
  };
  std::vector<Spec> specs;
  int i = 0;
  for (int k : {1, 5, 20, 32})
    for (double top_p : {1.0, 0.95, 0.5})
      for (double min_p : {0.0, 0.1})
        specs.push_back(
            {i % 3 ? 0.6 : 1.0, top_p, min_p, k, std::vector<int>{0, 5, -1}[size_t(i++ % 3)]});
  specs.push_back({0.0, 1.0, 0.0, 0, 2});    // greedy
  specs.push_back({1.0, 1.0, 0.0, 0, 5});    // plain temperature (device draw)
  specs.push_back({0.6, 0.95, 0.0, 0, 5});   // top_p alone (the OpenAI client's kind of request)
  specs.push_back({0.7, 0.9, 0.0, 0, 0});    // top_p alone
  specs.push_back({1.0, 1.0, 0.05, 0, 2});   // min_p alone
  specs.push_back({0.8, 0.8, 0.02, 0, -1});  // top_p and min_p
  specs.push_back({0.6, 0.95, 0.0, 40, 1});  // top_k above 32 (radix select on a CUDA device)
  specs.push_back({1.0, 1.0, 0.1, 64, 0});   // top_k above 32 + min_p
  auto run_all = [&](bool device) {
    EngineConfig c;
    c.device_greedy = device;
    c.eos_ids = {fx().tok->eos_id().value_or(2)};
    Engine e(*fx().model, fx().tok.get(), c);
    for (size_t j = 0; j < specs.size() + 2; ++j) {
      RequestSpec r;
      r.id = std::to_string(j);
      r.prompt = fx().tok->encode(j % 2 ? "Once upon a time" : "The little dog", true);
      r.params.max_tokens = 20;
      r.params.ignore_eos = j % 4 == 0;
      r.params.seed = uint64_t(70 + j);
      const Spec sp =
          j < specs.size() ? specs[j] : Spec{0.6, 0.95, 0.0, 20, 5};  // Qwen3's defaults
      r.params.temperature = sp.T, r.params.top_p = sp.top_p, r.params.min_p = sp.min_p;
      r.params.top_k = sp.top_k, r.params.logprobs = sp.logprobs;
      if (j == specs.size()) r.params.repetition_penalty = 1.2;  // host
      if (j == specs.size() + 1)
        r.params.min_tokens = 6;  // EOS banned first: host, then the device
      e.add_request(r);
    }
    return test::run_to_end(e);
  };
  auto device = run_all(true), host = run_all(false);
  ASSERT_EQ(device.size(), specs.size() + 2);
  int differ_from_greedy = 0;
  for (auto& [id, d] : device) {
    const SampleDelta& h = host.at(id);
    EXPECT_EQ(d.token_ids, h.token_ids) << id;
    ASSERT_EQ(d.logprobs.size(), h.logprobs.size()) << id;
    for (size_t j = 0; j < d.logprobs.size(); ++j) {
      EXPECT_EQ(d.logprobs[j].token, h.logprobs[j].token);
      EXPECT_EQ(bits(d.logprobs[j].logprob), bits(h.logprobs[j].logprob)) << id << " " << j;
      EXPECT_EQ(d.logprobs[j].top, h.logprobs[j].top) << id << " " << j;
      if (!d.logprobs[j].top.empty() && d.logprobs[j].token != d.logprobs[j].top[0].first)
        ++differ_from_greedy;
    }
  }
  EXPECT_GT(differ_from_greedy, 10);  // the candidate rows really sample
}
