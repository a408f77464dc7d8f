// Parsing and validating OpenAI request bodies (/v1/completions, /v1/chat/completions) into a
// GenerationJob: the engine requests to run plus how to present their results. Everything a
// client can get wrong is rejected here with a 400 naming the parameter, before the engine sees it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "tokenizer/jinja/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::server {

// What the handlers know about the served model; fixed after startup, read by many threads.
struct ModelInfo {
  std::string served_name;                           // the name clients must send as `model`
  std::string path;                                  // --model, reported by /v1/models
  const tok::Tokenizer* tokenizer = nullptr;         // null: token-id prompts only, no text
  std::unique_ptr<tok::ChatTemplate> chat_template;  // null: /v1/chat/completions answers 400
  int max_model_len = 0;                             // prompt + output tokens
  int64_t vocab_size = 0;
  int max_logprobs = 20;  // the most top logprobs a request may ask for
};

enum class ApiKind { kCompletion, kChat };

struct GenerationJob {
  ApiKind kind = ApiKind::kCompletion;
  std::vector<std::vector<int32_t>> prompts;  // one engine request per prompt (completions list)
  std::vector<std::string> prompt_texts;      // for echo; decoded when the prompt came as ids
  engine::SamplingParams params;
  int n = 1;
  std::vector<std::string> stop;
  bool skip_special_tokens = true;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  bool echo = false;           // completions: the prompt precedes the text (and its logprobs)
  // Completions: `logprobs` N (-1 none). Chat: `top_logprobs` when `logprobs` is true, else -1.
  int logprobs = -1;
  // Chat with `tools` (and tool_choice not "none"): `<tool_call>` blocks in the output become
  // `message.tool_calls` (server/tool_calls.h).
  bool parse_tool_calls = false;
};

// `body` must be a JSON object. Throws ApiError (400 bad parameter, 404 unknown model).
GenerationJob parse_completion_request(const nlohmann::json& body, const ModelInfo& model);
GenerationJob parse_chat_request(const nlohmann::json& body, const ModelInfo& model);

// The prompt a chat request renders to (also used by /tokenize with `messages`).
std::string render_chat(const nlohmann::json& body, const ModelInfo& model);

// Checks `model` against the served name (absent or null means the served model); 404 otherwise.
void check_model_name(const nlohmann::json& body, const ModelInfo& model);

// Token ids from a JSON array, each checked against the vocabulary.
std::vector<int32_t> parse_token_ids(const nlohmann::json& value, const ModelInfo& model,
                                     const std::string& param);

}  // namespace bitexact::server
