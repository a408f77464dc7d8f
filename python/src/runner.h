// The engine behind one Python `bitexact.LLM`: the model, its tokenizer and a continuous-batching
// Engine, with each generate() call run to completion. Calls from several Python threads take
// turns on one mutex, so a weight update waits for the batch in flight: every request sees one set
// of weights from its first token to its last.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "apps/model_session.h"
#include "engine/engine.h"
#include "server/protocol.h"

namespace bitexact::python {

struct RunnerOptions {
  std::string model;
  std::string device = "cpu";  // "cpu", "cuda" or "auto" (cuda when this build and machine have it)
  bool batch_invariant = true;
  int max_model_len = 0;  // 0: the model's
  bool enforce_eager = false;
  std::string load_format = "auto";  // or "dummy"
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  size_t kv_cache_bytes = 0;  // 0: the engine's default
  bool enable_prefix_caching = true;
};

struct Request {
  std::vector<int32_t> prompt;
  engine::SamplingParams params;
  int n = 1;
  std::vector<std::string> stop;
  int prompt_logprobs = -1;
  bool skip_special_tokens = true;
};

// (token id, logprob, decoded token text; empty without a tokenizer)
using TokenEntry = std::tuple<int32_t, float, std::string>;

struct TokenLogprobs {
  TokenEntry chosen;            // the sampled (or prompt) token
  std::vector<TokenEntry> top;  // the top N, highest first
};

struct SampleResult {
  int index = 0;
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenLogprobs> logprobs;  // one per token when params.logprobs >= 0
  std::string finish_reason;
  std::optional<std::string> stop_reason;
  uint64_t seed = 0;
};

struct RequestResult {
  std::vector<SampleResult> samples;                          // by index
  std::optional<std::vector<TokenLogprobs>> prompt_logprobs;  // [0] is the first token's: no logits
};

class Runner {
 public:
  explicit Runner(const RunnerOptions& options);

  // Runs every request to completion. `tick(finished)` is called between engine steps (at least
  // every ~100 ms) with the number of requests finished so far; if it throws, the batch's
  // requests are aborted and the exception propagates. Throws Error(kInvalidArgument) for a bad
  // request before any work.
  std::vector<RequestResult> generate(const std::vector<Request>& requests,
                                      const std::function<void(int)>& tick);
  // Engine::update_weights; waits for a concurrent generate() to finish first.
  void update_weights(const std::string& dir);

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;
  // server::render_chat on a JSON body {messages, add_generation_prompt, chat_template_kwargs,
  // chat_template, tools}: the prompt text of a conversation, with the model's template.
  std::string render_chat(const std::string& body_json) const;

  bool has_tokenizer() const { return session_.tokenizer != nullptr; }
  bool has_chat_template() const { return info_.chat_template != nullptr; }
  const std::vector<int32_t>& eos_ids() const { return session_.eos_ids; }
  int max_model_len() const { return engine_->config().max_model_len; }
  int64_t vocab_size() const { return session_.model->config().vocab_size; }
  std::string device() const {
    return session_.model->context().device == Device::kCuda ? "cuda" : "cpu";
  }
  bool batch_invariant() const { return session_.model->context().batch_invariant; }
  const io::GenerationConfig& generation_config() const { return generation_; }

 private:
  TokenLogprobs convert(const engine::TokenLogprob& t) const;

  apps::ModelSession session_;
  server::ModelInfo info_;  // what render_chat reads
  io::GenerationConfig generation_;
  std::unique_ptr<engine::Engine> engine_;
  std::mutex mu_;
  uint64_t next_id_ = 0;
};

}  // namespace bitexact::python
