// InvarianceChecker: every property is "same requests, two schedules, equal bits". The solo
// reference (one running sequence, no prefix cache) is computed once per request and reused.
#include "engine/invariance_check.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "core/error.h"

namespace bitexact::engine {
namespace {

std::string fmt_lp(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", double(x), bits);
  return buf;
}

bool same_float(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

}  // namespace

std::string first_difference(const Completion& a, const Completion& b) {
  const size_t n = std::max(a.tokens.size(), b.tokens.size());
  for (size_t t = 0; t < n; ++t) {
    if (t >= a.tokens.size() || t >= b.tokens.size())
      return "token " + std::to_string(t) + ": lengths " + std::to_string(a.tokens.size()) + " vs " +
             std::to_string(b.tokens.size());
    if (a.tokens[t] != b.tokens[t] || !same_float(a.logprobs[t], b.logprobs[t]))
      return "token " + std::to_string(t) + ": id " + std::to_string(a.tokens[t]) + " logprob " +
             fmt_lp(a.logprobs[t]) + " vs id " + std::to_string(b.tokens[t]) + " logprob " + fmt_lp(b.logprobs[t]);
  }
  return {};
}

InvarianceChecker::InvarianceChecker(model::Model& model, std::vector<int32_t> eos_ids, CheckOptions options)
    : model_(model), eos_(std::move(eos_ids)), opt_(std::move(options)), rng_(opt_.seed) {}

uint64_t InvarianceChecker::next() {  // splitmix64: the checks' own reproducible randomness
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<int32_t> InvarianceChecker::random_prompt(int min_len, int max_len) {
  const int vocab = int(model_.config().vocab_size);
  std::vector<int32_t> p(size_t(min_len + int(next() % uint64_t(max_len - min_len + 1))));
  for (auto& t : p) t = 3 + int32_t(next() % uint64_t(vocab - 3));  // skip the usual specials
  return p;
}

RequestSpec InvarianceChecker::request(std::vector<int32_t> prompt, uint64_t seed) const {
  RequestSpec r;
  r.prompt = std::move(prompt);
  r.params.max_tokens = opt_.max_tokens;
  r.params.temperature = opt_.temperature;
  r.params.seed = seed;
  r.params.logprobs = 0;
  r.params.ignore_eos = true;  // fixed lengths: every token position is compared
  return r;
}

EngineConfig InvarianceChecker::base_config() const {
  EngineConfig c;
  c.block_size = opt_.block_size;
  c.eos_ids = eos_;
  c.max_num_seqs = 256;
  c.max_num_batched_tokens = 2048;
  const int per_seq = (std::max(opt_.max_prompt, 64) + 2 * opt_.max_tokens + 1 + c.block_size - 1) / c.block_size;
  c.num_kv_blocks = (opt_.num_prompts + 2) * per_seq + 16;
  return c;
}

std::vector<Completion> InvarianceChecker::drive(Engine& engine, const std::vector<RequestSpec>& requests,
                                                 const std::vector<int>& add_at) {
  std::vector<Completion> out(requests.size());
  std::map<std::string, size_t> index;
  size_t added = 0;
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (!add_at.empty())
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return add_at[a] < add_at[b]; });
  static uint64_t serial = 0;
  for (int step = 0; added < requests.size() || engine.has_unfinished(); ++step) {
    while (added < requests.size() && (add_at.empty() || add_at[order[added]] <= step)) {
      RequestSpec r = requests[order[added]];
      r.id = "check-" + std::to_string(serial++);
      index[r.id] = order[added++];
      engine.add_request(std::move(r));
    }
    for (RequestOutput& o : engine.step()) {
      Completion& c = out[index.at(o.id)];
      if (o.prompt_logprobs) {
        c.prompt_logprobs.assign(o.prompt_logprobs->size(), 0.0f);
        for (size_t j = 1; j < o.prompt_logprobs->size(); ++j) c.prompt_logprobs[j] = (*o.prompt_logprobs)[j].logprob;
      }
      for (const SampleDelta& d : o.samples) {
        if (d.index != 0) continue;
        c.tokens.insert(c.tokens.end(), d.token_ids.begin(), d.token_ids.end());
        for (const auto& lp : d.logprobs) c.logprobs.push_back(lp.logprob);
      }
    }
  }
  return out;
}

std::vector<Completion> InvarianceChecker::run(const EngineConfig& config, const std::vector<RequestSpec>& requests,
                                               const std::vector<int>& add_at, EngineStats* stats) {
  Engine engine(model_, nullptr, config);
  std::vector<Completion> out = drive(engine, requests, add_at);
  if (stats) *stats = engine.stats();
  return out;
}

std::vector<Completion> InvarianceChecker::solo(const std::vector<RequestSpec>& requests) {
  // One running sequence at a time and no prefix cache: every forward holds one request only.
  EngineConfig c = base_config();
  c.max_num_seqs = 1;
  c.enable_prefix_caching = false;
  return run(c, requests);
}

void InvarianceChecker::compare(CheckResult& r, const std::vector<Completion>& want,
                                const std::vector<Completion>& got, const std::vector<int>& ids) const {
  for (size_t i = 0; i < want.size(); ++i) {
    ++r.cases;
    std::string d = first_difference(want[i], got[i]);
    if (d.empty()) continue;
    if (r.divergent++ == 0) r.first = "request " + std::to_string(ids.empty() ? int(i) : ids[i]) + ", " + d;
  }
}

CheckResult InvarianceChecker::batch_size() {
  CheckResult r;
  r.property = "I1 batch size (1 vs " + std::to_string(opt_.num_prompts) + ")";
  std::vector<RequestSpec> reqs;
  for (int i = 0; i < opt_.num_prompts; ++i)
    reqs.push_back(request(random_prompt(opt_.min_prompt, opt_.max_prompt), opt_.seed + uint64_t(i)));
  compare(r, solo(reqs), run(base_config(), reqs), {});
  return r;
}

CheckResult InvarianceChecker::needle() {
  CheckResult r;
  r.property = "I2 needle position/neighbours";
  RequestSpec needle = request(random_prompt(opt_.min_prompt, opt_.max_prompt), opt_.seed);
  const Completion alone = solo({needle})[0];
  const int N = opt_.num_prompts;
  for (int t = 0; t < opt_.needle_trials; ++t) {
    const int others = N / 2 + int(next() % uint64_t(N - N / 2 + 1));
    std::vector<RequestSpec> reqs;
    for (int i = 0; i < others; ++i)
      reqs.push_back(request(random_prompt(1, opt_.max_prompt), next() & 0xffffffffu));
    const size_t at = next() % (reqs.size() + 1);
    reqs.insert(reqs.begin() + long(at), needle);
    compare(r, {alone}, {run(base_config(), reqs)[at]}, {t});
  }
  if (r.divergent) r.first = "trial " + r.first.substr(8);
  return r;
}

CheckResult InvarianceChecker::arrival() {
  CheckResult r;
  r.property = "I3 arrival timing";
  std::vector<RequestSpec> reqs;
  std::vector<int> at;
  for (int i = 0; i < opt_.num_prompts; ++i) {
    reqs.push_back(request(random_prompt(opt_.min_prompt, opt_.max_prompt), opt_.seed + 1000 + uint64_t(i)));
    at.push_back(int(next() % 24));
  }
  compare(r, solo(reqs), run(base_config(), reqs, at), {});
  return r;
}

CheckResult InvarianceChecker::chunked_prefill() {
  CheckResult r;
  r.property = "I4 chunked prefill (budgets 1..17 vs 2048)";
  std::vector<RequestSpec> reqs;
  for (int i = 0; i < 4; ++i)
    reqs.push_back(request(random_prompt(std::min(std::max(opt_.min_prompt, 20), opt_.max_prompt), opt_.max_prompt), opt_.seed + 2000 + uint64_t(i)));
  const std::vector<Completion> want = run(base_config(), reqs);
  for (int budget : opt_.chunk_budgets) {
    EngineConfig c = base_config();
    c.max_num_batched_tokens = budget;
    CheckResult one;
    compare(one, want, run(c, reqs), {});
    r.cases += one.cases;
    if (one.divergent && !r.divergent) r.first = "budget " + std::to_string(budget) + ", " + one.first;
    r.divergent += one.divergent;
  }
  return r;
}

CheckResult InvarianceChecker::prefix_cache() {
  CheckResult r;
  r.property = "I5 prefix cache cold vs hot";
  const int bs = opt_.block_size;
  const std::vector<int32_t> prefix = random_prompt(3 * bs, 3 * bs);
  std::vector<RequestSpec> reqs;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p = prefix;
    for (int32_t t : random_prompt(1, 3)) p.push_back(t);
    reqs.push_back(request(p, opt_.seed + 3000 + uint64_t(i)));
  }
  const std::vector<Completion> cold = solo(reqs);
  EngineConfig c = base_config();
  c.max_num_seqs = 1;  // one at a time: each request finds the prefix the warm-up left behind
  Engine engine(model_, nullptr, c);
  std::vector<int32_t> warm = prefix;
  warm.push_back(3);
  drive(engine, {request(warm, 1)});
  const uint64_t hits0 = engine.stats().prefix_cache_hits;
  compare(r, cold, drive(engine, reqs), {});
  if (engine.stats().prefix_cache_hits == hits0) {
    r.divergent = r.cases;
    r.first = "the hot run found nothing in the prefix cache (check broken)";
  }
  return r;
}

CheckResult InvarianceChecker::prefill_vs_decode() {
  CheckResult r;
  r.property = "I6 decode vs prompt logprobs";
  std::vector<RequestSpec> reqs, refed;
  for (int i = 0; i < 8; ++i)
    reqs.push_back(request(random_prompt(opt_.min_prompt, opt_.max_prompt), opt_.seed + 4000 + uint64_t(i)));
  const std::vector<Completion> decoded = solo(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<int32_t> p = reqs[i].prompt;
    p.insert(p.end(), decoded[i].tokens.begin(), decoded[i].tokens.end());
    RequestSpec q = request(p, 1);
    q.params.max_tokens = 1;
    q.prompt_logprobs = 0;
    refed.push_back(q);
  }
  const std::vector<Completion> prefilled = run(base_config(), refed);
  for (size_t i = 0; i < reqs.size(); ++i) {
    Completion want = decoded[i], got = decoded[i];
    const size_t P = reqs[i].prompt.size();
    for (size_t t = 0; t < got.logprobs.size(); ++t)
      got.logprobs[t] = P + t < prefilled[i].prompt_logprobs.size() ? prefilled[i].prompt_logprobs[P + t] : 0.0f;
    compare(r, {want}, {got}, {int(i)});
  }
  return r;
}

CheckResult InvarianceChecker::preemption() {
  CheckResult r;
  r.property = "I8 preemption (tiny KV cache)";
  // Prompts of whole blocks: every sequence needs a new block at its first decode, so a cache
  // of one sequence + 1 block preempts whenever two run at once (needs max_tokens >= 2).
  const int bs = opt_.block_size;
  std::vector<RequestSpec> reqs;
  for (int i = 0; i < std::max(8, opt_.num_prompts / 2); ++i) {
    std::vector<int32_t> p = random_prompt(opt_.min_prompt, opt_.max_prompt);
    const std::vector<int32_t> pad = random_prompt(bs, bs);
    p.insert(p.end(), pad.begin(), pad.begin() + (bs - int(p.size()) % bs) % bs);
    reqs.push_back(request(p, opt_.seed + 5000 + uint64_t(i)));
  }
  EngineConfig c = base_config();
  c.num_kv_blocks = (opt_.max_prompt + bs + opt_.max_tokens + bs - 1) / bs + 2;  // + the scratch block
  EngineStats st;
  compare(r, solo(reqs), run(c, reqs, {}, &st), {});
  if (st.preemptions == 0) {
    r.divergent = r.cases;
    r.first = "no request was preempted (check broken)";
  }
  r.property += ", " + std::to_string(st.preemptions) + " preemptions";
  return r;
}

CheckResult InvarianceChecker::graphs_vs_eager(model::Model& eager) {
  CheckResult r;
  r.property = "I7 CUDA graphs vs eager";
  std::vector<RequestSpec> reqs;
  for (int i = 0; i < opt_.num_prompts; ++i)
    reqs.push_back(request(random_prompt(opt_.min_prompt, opt_.max_prompt), opt_.seed + 6000 + uint64_t(i)));
  const std::vector<Completion> graphed = run(base_config(), reqs);
  Engine engine(eager, nullptr, base_config());
  compare(r, drive(engine, reqs), graphed, {});
  return r;
}

std::vector<CheckResult> InvarianceChecker::run_all() {
  return {batch_size(), needle(), arrival(), chunked_prefill(), prefix_cache(), prefill_vs_decode(), preemption()};
}

}  // namespace bitexact::engine
