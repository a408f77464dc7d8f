// A simple batched generation loop: all requests are prefilled in one forward, then decoded
// together one token per step until each stops. (The continuous-batching scheduler with token
// budgets, chunked prefill, prefix caching and preemption builds on the same pieces.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "kv/kv_cache.h"
#include "model/model.h"

namespace bitexact::engine {

struct GenerateRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

struct TopLogprobs {
  std::vector<std::pair<int32_t, float>> entries;
};

struct GenerateOutput {
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;            // one per generated token
  std::vector<TopLogprobs> top_logprobs;  // one per generated token when params.logprobs > 0
  uint64_t seed = 0;
  std::string finish_reason;              // "length" or "stop"
};

// The seed a request uses: its own, or a fresh one from the system's entropy (reported back).
uint64_t resolve_seed(const SamplingParams& params);

class BatchGenerator {
 public:
  // `eos_ids`: tokens that end a request unless it sets ignore_eos. One of the kv_blocks is
  // kept as scratch for padding rows.
  BatchGenerator(model::Model& model, int kv_blocks, int block_size, std::vector<int32_t> eos_ids);

  // Runs every request to completion. Throws Error(kInvalidArgument) for a bad request (checked
  // up front, before any work) and Error(kOutOfResources) if the batch cannot fit the KV cache.
  std::vector<GenerateOutput> generate(const std::vector<GenerateRequest>& requests);

 private:
  model::Model& model_;
  kv::KvCache cache_;
  std::vector<model::LayerKv> layers_;
  std::vector<int32_t> eos_ids_;
  int32_t scratch_slot_ = -1;
};

}  // namespace bitexact::engine
