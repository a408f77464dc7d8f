// Greedy, temperature, top-k, top-p and min-p sampling. top-k, top-p and min-p pick candidates
// from the tokens sorted by (logit desc, id asc); the draw among the candidates is the
// exponential race of ops/sample_race.h, the same arithmetic as ops::sample_tokens on every
// device. Logprobs are the model's raw log-softmax.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/philox.h"
#include "ops/ops.h"
#include "ops/sample_filter.h"
#include "ops/sample_race.h"
#include "ops/top_key.h"

namespace bitexact::engine {

void SamplingParams::validate() const {
  auto bad = [](const std::string& m) { fail(ErrorKind::kInvalidArgument, m); };
  if (max_tokens < 1) bad("max_tokens must be at least 1");
  if (min_tokens < 0 || min_tokens > max_tokens) bad("min_tokens must be between 0 and max_tokens");
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) bad("temperature must be a finite number >= 0");
  if (!(top_p > 0.0 && top_p <= 1.0)) bad("top_p must be in (0, 1]");
  if (top_k < -1) bad("top_k must be -1, 0 (off) or positive");
  if (!(min_p >= 0.0 && min_p <= 1.0)) bad("min_p must be in [0, 1]");
  if (logprobs < -1 || logprobs > 20) bad("logprobs must be between 0 and 20");
  if (!(presence_penalty >= -2.0 && presence_penalty <= 2.0)) bad("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.0 && frequency_penalty <= 2.0)) bad("frequency_penalty must be in [-2, 2]");
  if (!(repetition_penalty > 0.0 && repetition_penalty <= 2.0)) bad("repetition_penalty must be in (0, 2]");
}

namespace {

// The penalised copy of a logits row (SamplingParams' penalties, in vLLM's order). Token ids
// outside the vocabulary in the history are ignored.
void apply_penalties(std::span<const float> logits, const SamplingParams& p, TokenHistory h,
                     std::vector<float>& out, std::vector<int32_t>& counts) {
  const int64_t V = int64_t(logits.size());
  out.assign(logits.begin(), logits.end());
  counts.assign(size_t(V), 0);
  for (int32_t t : h.output)
    if (t >= 0 && t < V) ++counts[size_t(t)];
  if (p.repetition_penalty != 1.0) {
    const float r = float(p.repetition_penalty);
    auto penalise = [&](int32_t t) {
      if (t < 0 || t >= V) return;
      out[size_t(t)] = logits[size_t(t)] > 0 ? logits[size_t(t)] / r : logits[size_t(t)] * r;
    };
    for (int32_t t : h.prompt) penalise(t);  // idempotent: each seen token once, from the raw logit
    for (int32_t t : h.output) penalise(t);
  }
  const float f = float(p.frequency_penalty), pr = float(p.presence_penalty);
  if (f != 0.0f || pr != 0.0f)
    for (int64_t t = 0; t < V; ++t)
      if (counts[size_t(t)] > 0) {
        out[size_t(t)] -= f * float(counts[size_t(t)]);
        out[size_t(t)] -= pr;
      }
}

}  // namespace

int32_t Sampler::draw_sorted(const int32_t* ids, const float* vals, int64_t keep,
                             const SamplingParams& p, uint64_t seed, uint64_t token_index) {
  const uint64_t top_p_u = ops::filter::top_p_units(p.top_p), min_p_u = ops::filter::min_p_units(p.min_p);
  if (top_p_u || min_p_u) {
    // The filters in integer weights (ops/sample_filter.h): the device's radix select keeps the
    // same prefix, whatever order it adds in.
    weights_.resize(size_t(keep));
    keep = ops::filter::filter_sorted(keep, float(p.temperature), top_p_u, min_p_u, weights_.data(),
                                      [&](int64_t i) { return vals[i]; });
  }
  // The draw among the kept candidates: the race, as on the device (ops::sample_tokens).
  return ops::race::race_candidates_by(vals[0], float(p.temperature), seed, token_index, ids, keep,
                                       ids[0], [&](int64_t j) { return vals[j]; });
}

SampleResult Sampler::sample(std::span<const float> logits, const SamplingParams& p, uint64_t seed,
                             uint64_t token_index, std::span<const int32_t> banned,
                             const float* given_logprobs, TokenHistory history) {
  const int64_t V = int64_t(logits.size());
  const float* lp = given_logprobs;  // the model's row, read in place
  if (!lp) {
    logprobs_.resize(size_t(V));
    ops::ExecContext cpu;  // one row: the CPU log-softmax, the same code as everywhere else
    Tensor in = Tensor::view(const_cast<float*>(logits.data()), DType::kF32, {1, V});
    Tensor out = Tensor::view(logprobs_.data(), DType::kF32, {1, V});
    ops::log_softmax(cpu, in, out);
    lp = logprobs_.data();
  }

  // Penalties decide the token; the logprobs above stay the raw distribution's.
  if (p.has_penalties()) {
    apply_penalties(logits, p, history, penalized_, counts_);
    logits = std::span<const float>(penalized_);
  }
  auto allowed = [&](int32_t t) { return std::find(banned.begin(), banned.end(), t) == banned.end(); };
  SampleResult r;
  if (p.greedy()) {
    float best = -INFINITY;
    for (int32_t t = 0; t < V; ++t)
      if (logits[t] > best && allowed(t)) best = logits[t], r.token = t;  // strict >: lowest id wins ties
    if (r.token < 0) r.token = 0;
  } else if (!(p.top_k > 0 && p.top_k < V) && p.min_p <= 0 && p.top_p >= 1.0) {
    // Plain temperature: every allowed token races; no sort. mx = the best allowed logit.
    const unsigned char* excluded = nullptr;
    if (!banned.empty()) {
      excluded_.assign(size_t(V), 0);
      for (int32_t t : banned)
        if (t >= 0 && t < V) excluded_[size_t(t)] = 1;
      excluded = excluded_.data();
    }
    int32_t best = -1;
    uint64_t best_key = 0;
    for (int32_t t = 0; t < V; ++t) {
      if (excluded && excluded[t]) continue;
      if (best < 0) best = t;  // the answer for a row of NaN only
      const uint64_t k = ops::top_key(logits[t], t);
      if (k > best_key) best_key = k, best = t;
    }
    if (best < 0) fail(ErrorKind::kInvalidArgument, "every token is banned at this step");
    r.token = ops::race::race_row({logits.data(), V, float(p.temperature), seed, token_index}, excluded, best);
  } else {
    // Candidates sorted by (logit desc, id asc); the scaled softmax keeps that order.
    // One 64-bit key per token, (logit descending, id ascending) as an unsigned order, so the
    // sort compares integers instead of chasing logits: the same total order, 2-3x faster.
    keys_.resize(size_t(V));
    // Banned tokens sort last, so top-k is taken among the allowed ones (as vLLM masks them).
    // The order of ops::top_tokens (NaN last), so device and host rank ties alike.
    for (int32_t t = 0; t < V; ++t) keys_[size_t(t)] = uint64_t(~ops::top_key_bits(logits[t])) << 32 | uint32_t(t);
    for (int32_t t : banned)
      if (t >= 0 && t < V) keys_[size_t(t)] = ~uint64_t(0xffffffffu) | uint32_t(t);
    int64_t keep = V;
    if (p.top_k > 0 && p.top_k < V) {
      std::partial_sort(keys_.begin(), keys_.begin() + p.top_k, keys_.end());
      keep = p.top_k;
    } else {
      std::sort(keys_.begin(), keys_.end());
    }
    order_.resize(size_t(keep));
    for (int64_t i = 0; i < keep; ++i) order_[size_t(i)] = int32_t(uint32_t(keys_[size_t(i)]));
    order_.erase(std::remove_if(order_.begin(), order_.end(), [&](int32_t t) { return !allowed(t); }), order_.end());
    keep = int64_t(order_.size());
    if (keep == 0) fail(ErrorKind::kInvalidArgument, "every token is banned at this step");
    order_logits_.resize(size_t(keep));
    for (int64_t i = 0; i < keep; ++i) order_logits_[size_t(i)] = logits[order_[size_t(i)]];
    r.token = draw_sorted(order_.data(), order_logits_.data(), keep, p, seed, token_index);
  }
  r.logprob = lp[r.token];
  if (p.logprobs > 0) {  // by (logprob desc, id asc), NaN last: ops::top_logprobs' order
    keys_.resize(size_t(V));
    for (int32_t t = 0; t < V; ++t) keys_[size_t(t)] = ops::top_key(lp[t], t);
    const int n = int(std::min<int64_t>(p.logprobs, V));
    std::partial_sort(keys_.begin(), keys_.begin() + n, keys_.end(), std::greater<uint64_t>());
    for (int i = 0; i < n; ++i) {
      const int32_t t = ops::top_key_column(keys_[size_t(i)]);
      r.top.emplace_back(t, lp[t]);
    }
  }
  return r;
}

}  // namespace bitexact::engine
