// Logprob of a given token (and the top N) from one row of logits: the prompt-logprob path. It
// is the same log-softmax and ordering the sampler uses for sampled tokens, so a token's prompt
// logprob and its decode logprob are equal whenever the logits are (I6).
#pragma once

#include <cstdint>
#include <span>

#include "engine/engine.h"

namespace bitexact::engine {

// `top_n` > 0 also fills the top N (token, logprob), highest first, ties to the lowest id.
// `logprobs`: the row's log-softmax when the model computed it (the sampler is given the same),
// else it is computed here with the CPU op, as the sampler does.
TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top_n,
                           const float* logprobs = nullptr);

}  // namespace bitexact::engine
