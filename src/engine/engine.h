// The continuous-batching engine: requests are added at any time, and each step() schedules
// decode tokens and prefill chunks under a token budget, runs one forward, samples, and returns
// what each request produced. Invariance holds through every scheduling choice: a token's
// logits depend only on its own sequence (ARCHITECTURE.md section 1, I1-I8).
// Single-threaded: one thread owns the engine (the server posts work to it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::engine {

struct EngineConfig {
  int max_num_seqs = 256;              // running sequences at most
  int max_num_batched_tokens = 2048;   // tokens per forward (decode tokens + prefill chunks)
  int max_model_len = 0;               // prompt + output tokens; 0: the model's maximum
  int block_size = 16;
  int num_kv_blocks = 0;               // 0: sized from kv_cache_bytes
  size_t kv_cache_bytes = size_t(256) << 20;
  bool enable_prefix_caching = true;
  std::vector<int32_t> eos_ids;        // end a sequence unless ignore_eos
  // Greedy and temperature rows (any top_k / top_p / min_p) without penalties or banned tokens
  // take their token and logprobs from the model's device (model::RowTop, ops::sample_tokens)
  // instead of copying the logits row: the same values, fewer bytes, no host sort. Off: every
  // row goes through the host sampler on the full row (tests compare the two).
  bool device_greedy = true;
  // Testing hook: step() number N (1-based) and every later one throw kInternal before touching
  // any state, as a device fault would; 0 = never. Lets the server's unhealthy-engine path
  // (server/engine_worker.h) be tested without a GPU.
  int fail_at_step = 0;
};

struct RequestSpec {
  std::string id;                    // unique among unfinished requests
  std::vector<int32_t> prompt;
  SamplingParams params;
  int n = 1;                         // samples; sample i uses a seed derived from (seed, i)
  std::vector<std::string> stop;     // stop strings (need a tokenizer)
  int prompt_logprobs = -1;          // -1: none; 0: the prompt tokens'; N: and top N
  bool skip_special_tokens = true;
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // when requested
};

// What one sample of one request produced in a step (deltas since the previous output).
struct SampleDelta {
  int index = 0;                           // sample index in [0, n)
  std::vector<int32_t> token_ids;          // new tokens
  std::vector<TokenLogprob> logprobs;      // one per new token when params.logprobs >= 0
  std::string text;                        // newly completed text (empty without a tokenizer)
  bool finished = false;
  std::string finish_reason;               // "stop", "length", "abort"
  std::optional<std::string> stop_reason;  // the stop string or token that ended it
  uint64_t seed = 0;
};

struct RequestOutput {
  std::string id;
  std::vector<SampleDelta> samples;
  // Set once, in the first output of a request that asked for them ([0] is empty: no logits
  // precede the first prompt token). With n > 1: the output in which sample 0 gets its first
  // token (usually the first output).
  std::optional<std::vector<TokenLogprob>> prompt_logprobs;
  int num_prompt_tokens = 0;
  bool finished = false;  // every sample finished
};

struct EngineStats {
  int running = 0, waiting = 0;
  int kv_blocks_total = 0, kv_blocks_free = 0;
  uint64_t prompt_tokens = 0, generation_tokens = 0, preemptions = 0, prefix_cache_hits = 0;
  uint64_t steps = 0;
  // Cumulative wall time: step() overhead = step - forward; schedule and sample are parts of it.
  double step_seconds = 0, forward_seconds = 0, schedule_seconds = 0, sample_seconds = 0;
};

// The seed of sample `index` of a request seeded `seed`: sample 0 uses `seed` itself (so n = 1
// equals a plain request), others a Philox draw keyed by (seed, index).
uint64_t sample_seed(uint64_t seed, int index);

class Engine {
 public:
  Engine(model::Model& model, const tok::Tokenizer* tokenizer, const EngineConfig& config);
  ~Engine();

  // Validates and queues a request. Throws Error(kInvalidArgument) with a message for the
  // client (empty prompt, too long for max_model_len, duplicate id, bad parameters).
  void add_request(RequestSpec spec);
  // Drops a request wherever it is; its blocks are freed. Unknown ids are ignored. The next
  // step() returns one final output for it (finish_reason "abort" on each unfinished sample).
  void abort(const std::string& id);
  // One scheduling step. Returns outputs of requests that made progress or finished.
  std::vector<RequestOutput> step();
  bool has_unfinished() const;
  // Replaces the model's weights with a folder of safetensors holding the same tensor names,
  // shapes and dtypes (model/weight_update.h). Read and checked first: a mismatch, a missing or a
  // corrupt file throws Error and changes nothing. Atomic for requests: those added before this
  // call finish on the old weights; later ones wait until they have, then the weights are
  // swapped, the prefix cache (KV of the old weights) is cleared and the waiting requests start.
  // `on_done` runs when the swap happened: at once if nothing was running, else inside the
  // step() (or abort()) that ended the last older request. Throws Error(kInvalidArgument) while
  // another update waits.
  void update_weights(const std::string& dir, std::function<void()> on_done = {});
  bool weight_update_pending() const;
  EngineStats stats() const;
  const EngineConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bitexact::engine
