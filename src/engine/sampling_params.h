// Per-request sampling parameters, with vLLM's names and defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bitexact::engine {

struct SamplingParams {
  int max_tokens = 16;
  int min_tokens = 0;
  double temperature = 1.0;  // below kGreedyTemperature: greedy
  double top_p = 1.0;
  int top_k = 0;             // 0 or -1: off
  double min_p = 0.0;
  std::optional<uint64_t> seed;  // none: the engine draws one and reports it
  int logprobs = -1;             // -1: none; 0: the sampled token's; N: and the top N
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  // vLLM's penalties: repetition over prompt and output tokens (logit / r if positive, * r if
  // not), then frequency (- f * count) and presence (- p if present) over output tokens.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  double repetition_penalty = 1.0;

  static constexpr double kGreedyTemperature = 1e-5;
  bool greedy() const { return temperature < kGreedyTemperature; }
  bool has_penalties() const {
    return presence_penalty != 0.0 || frequency_penalty != 0.0 || repetition_penalty != 1.0;
  }
  // Throws Error(kInvalidArgument) naming the first bad field.
  void validate() const;
};

}  // namespace bitexact::engine
