// The invariance matrix of ARCHITECTURE.md section 1, measured on a model through the engine:
// each check runs the same requests under two schedules (alone vs batched, chunk budgets, cold
// vs hot prefix cache, preemption, ...) and compares token ids and logprobs bit for bit. Used by
// `bitexact verify` and by the invariance tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace bitexact::engine {

struct CheckOptions {
  int num_prompts = 32;      // I1, I3, I8
  int max_tokens = 16;
  double temperature = 0.6;
  uint64_t seed = 1234;      // request i uses seed + i; prompts are drawn from it too
  int min_prompt = 5, max_prompt = 60;
  int needle_trials = 5;     // I2: needle among N/2..N random prompts
  std::vector<int> chunk_budgets = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
  int block_size = 16;
};

struct CheckResult {
  std::string property;  // "I1 batch size", ...
  int cases = 0;         // request comparisons made
  int divergent = 0;     // of which not bitwise equal
  std::string first;     // the first divergence: request, token index, the two logprobs
};

// What the engine returned for one request (sample 0).
struct Completion {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<float> prompt_logprobs;  // [P] when asked; [0] is 0 (no logits precede it)
};

class InvarianceChecker {
 public:
  InvarianceChecker(model::Model& model, std::vector<int32_t> eos_ids, CheckOptions options);

  CheckResult batch_size();         // I1: batch 1 vs all prompts at once
  CheckResult needle();             // I2: a needle alone vs among random prompts at random places
  CheckResult arrival();            // I3: requests added at random steps vs alone
  CheckResult chunked_prefill();    // I4: budgets 1..17 vs 2048
  CheckResult prefix_cache();       // I5: cold vs hot cache, shared prefixes
  CheckResult prefill_vs_decode();  // I6: decode logprobs vs prompt logprobs of the re-fed sequence
  CheckResult preemption();         // I8: a KV cache so small that requests are preempted
  // I7: this model (CUDA graphs on) vs `eager`, the same weights loaded with graphs off.
  CheckResult graphs_vs_eager(model::Model& eager);
  std::vector<CheckResult> run_all();

  // Runs `requests` through a fresh engine; request i is added before step add_at[i] (all at
  // step 0 when empty). Returns sample 0 of each, in request order.
  std::vector<Completion> run(const EngineConfig& config, const std::vector<RequestSpec>& requests,
                              const std::vector<int>& add_at = {}, EngineStats* stats = nullptr);
  // The same on an existing engine (whose prefix cache may already be warm).
  static std::vector<Completion> drive(Engine& engine, const std::vector<RequestSpec>& requests,
                                       const std::vector<int>& add_at = {});
  EngineConfig base_config() const;

 private:
  std::vector<int32_t> random_prompt(int min_len, int max_len);
  RequestSpec request(std::vector<int32_t> prompt, uint64_t seed) const;
  std::vector<Completion> solo(const std::vector<RequestSpec>& requests);
  uint64_t next();
  void compare(CheckResult& r, const std::vector<Completion>& want, const std::vector<Completion>& got,
               const std::vector<int>& ids) const;

  model::Model& model_;
  std::vector<int32_t> eos_;
  CheckOptions opt_;
  uint64_t rng_;
};

// Bitwise comparison of two completions: empty when equal, else "token i: <a> vs <b>".
std::string first_difference(const Completion& want, const Completion& got);

}  // namespace bitexact::engine
