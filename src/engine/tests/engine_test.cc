// Engine behaviour on stories260K (a real vocabulary): request validation, stop strings (with
// streaming hold-back), stop token ids, EOS and ignore_eos, min_tokens, max_model_len, n > 1
// seeds, abort, and prompt logprobs with top N.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <cstring>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/tests/stories_fixture.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

using test::fx;
using test::kStories;

struct Out {
  std::vector<SampleDelta> samples;  // accumulated per sample
  std::vector<std::string> deltas;   // sample 0's text deltas as streamed
  std::optional<std::vector<TokenLogprob>> prompt_lps;
};

Out run(RequestSpec r, EngineConfig c = {}) {
  Engine e(*fx().model, fx().tok.get(), c);
  r.id = "x";
  Out o;
  o.samples.resize(size_t(r.n));
  e.add_request(r);
  while (e.has_unfinished())
    for (auto& ro : e.step()) {
      if (ro.prompt_logprobs) o.prompt_lps = ro.prompt_logprobs;
      for (auto& d : ro.samples) {
        SampleDelta& s = o.samples[size_t(d.index)];
        s.token_ids.insert(s.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
        s.logprobs.insert(s.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
        s.text += d.text;
        if (d.index == 0 && !d.text.empty()) o.deltas.push_back(d.text);
        s.seed = d.seed;
        if (d.finished) s.finished = true, s.finish_reason = d.finish_reason, s.stop_reason = d.stop_reason;
      }
    }
  EXPECT_EQ(e.stats().kv_blocks_free, e.stats().kv_blocks_total);
  return o;
}

RequestSpec story(int max_tokens = 20) {
  RequestSpec r;
  r.prompt = fx().tok->encode("Once upon a time", true);
  r.params.max_tokens = max_tokens;
  r.params.temperature = 0;
  return r;
}

}  // namespace

TEST(Engine, GreedyContinuesTheStory) {
  Out o = run(story());
  EXPECT_EQ(o.samples[0].text.rfind(", there was a little girl named Lily", 0), 0u) << o.samples[0].text;
  EXPECT_EQ(o.samples[0].finish_reason, "length");
}

TEST(Engine, RejectsBadRequests) {
  Engine e(*fx().model, nullptr, {});
  RequestSpec r = story();
  r.id = "a";
  e.add_request(r);
  EXPECT_THROW(e.add_request(r), Error);  // duplicate id
  r.id = "b";
  RequestSpec empty = r;
  empty.prompt.clear();
  EXPECT_THROW(e.add_request(empty), Error);
  RequestSpec bad_token = r;
  bad_token.prompt.push_back(100000);
  EXPECT_THROW(e.add_request(bad_token), Error);
  RequestSpec stop = r;
  stop.stop = {"x"};  // needs a tokenizer
  EXPECT_THROW(e.add_request(stop), Error);
  RequestSpec n0 = r;
  n0.n = 0;
  EXPECT_THROW(e.add_request(n0), Error);
  RequestSpec longp = r;
  longp.prompt.assign(size_t(e.config().max_model_len), 5);
  EXPECT_THROW(e.add_request(longp), Error);
}

TEST(Engine, StopStringCutsTextAndHoldsBackPrefixes) {
  Out plain = run(story());
  RequestSpec r = story();
  r.stop = {" girl"};
  Out o = run(r);
  EXPECT_EQ(o.samples[0].text, ", there was a little");
  EXPECT_EQ(o.samples[0].finish_reason, "stop");
  EXPECT_EQ(o.samples[0].stop_reason, std::optional<std::string>(" girl"));
  for (const auto& d : o.deltas) EXPECT_EQ(d.find(" g"), std::string::npos) << d;  // never streamed
  // A stop string that never completes changes nothing, though prefixes were held back.
  r.stop = {" named Lucy"};
  Out o2 = run(r);
  EXPECT_EQ(o2.samples[0].text, plain.samples[0].text);
  EXPECT_EQ(o2.samples[0].token_ids, plain.samples[0].token_ids);
}

TEST(Engine, StopTokenIdsEosAndMinTokens) {
  Out plain = run(story(12));
  const auto& t = plain.samples[0].token_ids;
  RequestSpec r = story(12);
  r.params.stop_token_ids = {t[3]};
  Out o = run(r);
  ASSERT_LE(o.samples[0].token_ids.size(), 4u);
  EXPECT_EQ(o.samples[0].token_ids.back(), t[3]);
  EXPECT_EQ(o.samples[0].stop_reason, std::optional<std::string>(std::to_string(t[3])));
  EngineConfig c;
  c.eos_ids = {t[2]};
  Out eos = run(story(12), c);
  EXPECT_LE(eos.samples[0].token_ids.size(), 3u);
  EXPECT_EQ(eos.samples[0].finish_reason, "stop");
  EXPECT_FALSE(eos.samples[0].stop_reason);
  r = story(12);
  r.params.ignore_eos = true;
  EXPECT_EQ(run(r, c).samples[0].token_ids.size(), 12u);
  r = story(12);
  r.params.min_tokens = 12;  // EOS is banned until then
  Out m = run(r, c);
  EXPECT_EQ(m.samples[0].token_ids.size(), 12u);
  EXPECT_EQ(std::count(m.samples[0].token_ids.begin(), m.samples[0].token_ids.end(), t[2]), 0);
}

TEST(Engine, MaxModelLenEndsWithLength) {
  RequestSpec r = story(50);
  EngineConfig c;
  c.max_model_len = int(r.prompt.size()) + 3;
  Out o = run(r, c);
  EXPECT_EQ(o.samples[0].token_ids.size(), 3u);
  EXPECT_EQ(o.samples[0].finish_reason, "length");
}

TEST(Engine, SamplesUseDerivedSeedsAndSampleZeroEqualsNOne) {
  RequestSpec r = story(10);
  r.params.temperature = 1.0;
  r.params.seed = 99;
  r.params.logprobs = 0;
  r.n = 3;
  Out o = run(r);
  EXPECT_EQ(o.samples[0].seed, 99u);
  EXPECT_NE(o.samples[1].seed, o.samples[2].seed);
  for (int i = 0; i < 3; ++i) {
    RequestSpec one = r;
    one.n = 1;
    one.params.seed = sample_seed(99, i);
    Out s = run(one);
    EXPECT_EQ(s.samples[0].token_ids, o.samples[size_t(i)].token_ids) << "sample " << i;
    ASSERT_EQ(s.samples[0].logprobs.size(), o.samples[size_t(i)].logprobs.size());
    for (size_t k = 0; k < s.samples[0].logprobs.size(); ++k)
      EXPECT_EQ(std::memcmp(&s.samples[0].logprobs[k].logprob, &o.samples[size_t(i)].logprobs[k].logprob, 4), 0);
  }
}

TEST(Engine, AbortFreesBlocksAndReportsOnce) {
  Engine e(*fx().model, nullptr, {});
  RequestSpec r = story(50);
  r.id = "a";
  e.add_request(r);
  e.step();
  e.abort("a");
  e.abort("unknown");  // ignored
  auto outs = e.step();
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_TRUE(outs[0].finished);
  EXPECT_EQ(outs[0].samples.at(0).finish_reason, "abort");
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(e.stats().kv_blocks_free, e.stats().kv_blocks_total);
}

TEST(Engine, PromptLogprobsWithTopN) {
  RequestSpec r = story(4);
  r.prompt_logprobs = 3;
  r.n = 2;
  r.params.temperature = 0.7;
  r.params.seed = 5;
  Out o = run(r);
  ASSERT_TRUE(o.prompt_lps);
  ASSERT_EQ(o.prompt_lps->size(), r.prompt.size());
  for (size_t j = 1; j < r.prompt.size(); ++j) {
    const TokenLogprob& t = (*o.prompt_lps)[j];
    EXPECT_EQ(t.token, r.prompt[j]);
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_GE(t.top[0].second, t.top[1].second);
    EXPECT_GE(t.top[0].second, t.logprob);
  }
}

// Greedy rows take token and logprobs from the model's device path (model::RowTop) unless the
// host sampler is needed; both must give the same bits. Mixed requests: logprobs none/0/5,
// min_tokens (banned EOS: host path), a penalty (host path), and temperature (device draw,
// ops::sample_tokens; device_sampler_test.cc covers it in depth).
TEST(Engine, DeviceGreedyEqualsHostSampler) {
  auto run_all = [](bool device_greedy) {
    EngineConfig c;
    c.device_greedy = device_greedy;
    c.eos_ids = {fx().tok->eos_id().value_or(2)};
    Engine e(*fx().model, fx().tok.get(), c);
    std::vector<RequestSpec> specs;
    for (int i = 0; i < 6; ++i) {
      RequestSpec r = story(24);
      r.id = std::to_string(i);
      r.prompt = fx().tok->encode(i % 2 ? "Once upon a time" : "The little dog", true);
      r.params.logprobs = std::vector<int>{-1, 0, 5, 5, 3, 0}[size_t(i)];
      if (i == 3) r.params.min_tokens = 5;
      if (i == 4) r.params.repetition_penalty = 1.3;
      if (i == 5) r.params.temperature = 0.8, r.params.seed = 9;
      e.add_request(r);
    }
    return test::run_to_end(e);
  };
  auto device = run_all(true), host = run_all(false);
  ASSERT_EQ(device.size(), 6u);
  for (auto& [id, d] : device) {
    const SampleDelta& h = host.at(id);
    EXPECT_EQ(d.token_ids, h.token_ids) << id;
    ASSERT_EQ(d.logprobs.size(), h.logprobs.size()) << id;
    for (size_t i = 0; i < d.logprobs.size(); ++i) {
      EXPECT_EQ(d.logprobs[i].token, h.logprobs[i].token);
      EXPECT_EQ(std::memcmp(&d.logprobs[i].logprob, &h.logprobs[i].logprob, 4), 0) << id << " " << i;
      EXPECT_EQ(d.logprobs[i].top, h.logprobs[i].top) << id << " " << i;
    }
  }
  EXPECT_NE(device.at("4").token_ids, device.at("2").token_ids);  // the penalty changed something
}
