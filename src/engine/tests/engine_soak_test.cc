// Soak: 2,000 requests of random lengths and parameters (some sharing prefixes, some n = 2)
// arrive at random steps into an engine whose KV cache is small enough to force preemption;
// about one in ten is aborted at a random moment. Every request that was not aborted must
// finish bit-equal to its solo run, and at the end every KV block must be free.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "engine/engine.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";

struct Result {
  std::vector<std::vector<int32_t>> tokens;  // per sample
  std::vector<std::vector<float>> logprobs;
  std::vector<std::string> finish;
  bool finished = false, aborted = false;
};

void collect(std::vector<RequestOutput> outs, std::map<std::string, Result>& res) {
  for (auto& o : outs) {
    Result& r = res[o.id];
    for (auto& d : o.samples) {
      if (r.tokens.size() <= size_t(d.index)) {
        r.tokens.resize(size_t(d.index) + 1), r.logprobs.resize(size_t(d.index) + 1);
        r.finish.resize(size_t(d.index) + 1);
      }
      r.tokens[size_t(d.index)].insert(r.tokens[size_t(d.index)].end(), d.token_ids.begin(), d.token_ids.end());
      for (auto& lp : d.logprobs) r.logprobs[size_t(d.index)].push_back(lp.logprob);
      if (d.finished) r.finish[size_t(d.index)] = d.finish_reason;
      if (d.finish_reason == "abort") r.aborted = true;
    }
    r.finished = r.finished || o.finished;
  }
}

bool same(const Result& a, const Result& b) {
  if (a.tokens != b.tokens || a.finish != b.finish || a.logprobs.size() != b.logprobs.size()) return false;
  for (size_t i = 0; i < a.logprobs.size(); ++i)
    if (a.logprobs[i].size() != b.logprobs[i].size() ||
        std::memcmp(a.logprobs[i].data(), b.logprobs[i].data(), a.logprobs[i].size() * 4) != 0)
      return false;
  return true;
}

}  // namespace

TEST(EngineSoak, TwoThousandRequestsWithAbortsAndPreemption) {
  model::ModelOptions mo;
  auto model = model::Model::load(kStories, mo);
  const int vocab = int(model->config().vocab_size);
  std::mt19937_64 g(20261123);
  auto uni = [&](int lo, int hi) { return lo + int(g() % uint64_t(hi - lo + 1)); };

  // A pool of 250 distinct requests; the 2,000 submissions draw from it, so each distinct
  // request's solo run is computed once.
  std::vector<int32_t> shared(40);
  for (auto& t : shared) t = uni(3, vocab - 1);
  std::vector<RequestSpec> pool;
  for (int i = 0; i < 250; ++i) {
    RequestSpec r;
    if (i % 3 == 0) r.prompt.assign(shared.begin(), shared.begin() + uni(8, 40));
    for (int n = uni(1, 60); n > 0; --n) r.prompt.push_back(uni(3, vocab - 1));
    r.params.max_tokens = uni(1, 24);
    r.params.temperature = i % 4 == 0 ? 0.0 : 0.8;
    r.params.top_k = i % 5 == 0 ? 20 : 0;
    r.params.top_p = i % 7 == 0 ? 0.9 : 1.0;
    r.params.seed = g() & 0xffffffff;
    r.params.logprobs = 0;
    r.params.ignore_eos = i % 2 == 0;
    r.n = i % 10 == 0 ? 2 : 1;
    pool.push_back(r);
  }
  EngineConfig base;
  base.eos_ids = {2};
  base.block_size = 16;

  std::map<int, Result> solo;
  {
    EngineConfig c = base;
    c.max_num_seqs = 1;
    c.enable_prefix_caching = false;
    c.num_kv_blocks = 16;
    Engine e(*model, nullptr, c);
    std::map<std::string, Result> res;
    for (size_t i = 0; i < pool.size(); ++i) {
      RequestSpec r = pool[i];
      r.id = std::to_string(i);
      e.add_request(r);
    }
    while (e.has_unfinished()) collect(e.step(), res);
    for (auto& [id, r] : res) solo[std::stoi(id)] = r;
  }

  EngineConfig c = base;
  c.max_num_seqs = 64;
  c.max_num_batched_tokens = 256;
  c.num_kv_blocks = 40;  // ~8 sequences' worth: running sequences outgrow it and get preempted
  Engine e(*model, nullptr, c);
  const int total = 2000;
  std::vector<int> which(total);
  std::map<std::string, Result> res;
  std::multimap<uint64_t, std::string> abort_at;
  int next = 0;
  uint64_t step = 0;
  while (next < total || e.has_unfinished()) {
    for (int k = uni(0, 12); k > 0 && next < total; --k, ++next) {
      which[size_t(next)] = uni(0, int(pool.size()) - 1);
      RequestSpec r = pool[size_t(which[size_t(next)])];
      r.id = "r" + std::to_string(next);
      e.add_request(r);
      if (g() % 10 == 0) abort_at.emplace(step + uint64_t(uni(0, 30)), r.id);
    }
    for (auto it = abort_at.begin(); it != abort_at.end() && it->first <= step;) {
      e.abort(it->second);  // may already be finished: then it is ignored
      it = abort_at.erase(it);
    }
    collect(e.step(), res);
    ++step;
  }
  int completed = 0, aborted = 0;
  for (int i = 0; i < total; ++i) {
    const Result& r = res["r" + std::to_string(i)];
    ASSERT_TRUE(r.finished) << "request " << i << " never finished";
    if (r.aborted) {
      ++aborted;
      continue;
    }
    ++completed;
    EXPECT_TRUE(same(r, solo[which[size_t(i)]])) << "request r" << i << " (pool " << which[size_t(i)] << ")";
  }
  const EngineStats st = e.stats();
  std::printf("soak: %d completed bit-equal, %d aborted, %llu steps, %llu preemptions, %llu prefix-cache block hits\n",
              completed, aborted, (unsigned long long)st.steps, (unsigned long long)st.preemptions,
              (unsigned long long)st.prefix_cache_hits);
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_GT(aborted, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);  // every block free (cached ones evictable)
}
