// Token sampling from one row of logits. A draw uses the counter-based RNG keyed by
// (request seed, token index), never a shared generator, and ties break to the lowest token id,
// so a sample is a function of (logits, params, seed, index) alone (ARCHITECTURE.md rule 6).
// Temperature draws are the exponential race of ops/sample_race.h among the candidates that
// top-k / top-p / min-p leave: the arithmetic ops::sample_tokens runs on the model's device, so
// the engine may draw a row either way with the same bits.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "engine/sampling_params.h"

namespace bitexact::engine {

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;                         // of `token` under the model's raw distribution
  std::vector<std::pair<int32_t, float>> top;   // top-N (token, logprob), highest first
};

// The tokens a sample has seen so far, for the penalties.
struct TokenHistory {
  std::span<const int32_t> prompt, output;
};

class Sampler {
 public:
  // `banned`: token ids that may not be sampled now (EOS before min_tokens). `logprobs`: the
  // row's log-softmax if the model already computed it (else it is computed here, on the CPU).
  // Penalties change which token is chosen; the reported logprobs stay the model's raw ones
  // (vLLM's default `raw_logprobs`).
  SampleResult sample(std::span<const float> logits, const SamplingParams& params, uint64_t seed,
                      uint64_t token_index, std::span<const int32_t> banned = {},
                      const float* logprobs = nullptr, TokenHistory history = {});

 private:
  // The draw among candidates sorted by (logit desc, id asc), vals[i] the logit of ids[i]: min_p,
  // then top_p in integer weights (ops/sample_filter.h, the definition ops::sample_tokens keeps
  // on every device), then the race.
  int32_t draw_sorted(const int32_t* ids, const float* vals, int64_t n, const SamplingParams& p,
                      uint64_t seed, uint64_t token_index);

  std::vector<float> logprobs_;  // the row's log-softmax when the caller has none
  std::vector<int32_t> order_;
  std::vector<float> order_logits_;  // the logit of each order_ entry
  std::vector<uint64_t> keys_;  // sort keys: (logit desc, id asc)
  std::vector<uint64_t> weights_;  // the filters' integer weights (ops/sample_filter.h)
  std::vector<float> penalized_;
  std::vector<int32_t> counts_;
  std::vector<unsigned char> excluded_;  // banned tokens of a plain-temperature draw
};

}  // namespace bitexact::engine
