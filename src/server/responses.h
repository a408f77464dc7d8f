// Turns engine outputs into OpenAI response bodies: the whole response of a non-streaming request,
// or the SSE chunks of a streaming one, for completions and chat. Logprob floats are written as
// the doubles they convert to exactly, so a client parses back the engine's bits.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/protocol.h"
#include "server/tool_calls.h"

namespace bitexact::server {

class ResponseBuilder {
 public:
  ResponseBuilder(const GenerationJob& job, const ModelInfo& model, std::string id);

  // Records an output of the engine request for prompt `prompt_index`. When streaming, returns the
  // chunks to send for it (none when it carried nothing a client sees).
  std::vector<nlohmann::json> add(const engine::RequestOutput& out, int prompt_index);
  // The non-streaming response, once every output was added.
  nlohmann::json final_body() const;
  // The streaming chunk with the usage only (stream_options.include_usage).
  nlohmann::json usage_chunk() const;

 private:
  struct Choice {
    std::string text;
    std::vector<int32_t> token_ids;
    nlohmann::json logprobs;  // completions: {tokens, token_logprobs, top_logprobs, text_offset};
                              // chat: {content: [...]}; null when not requested
    std::string finish_reason;
    nlohmann::json stop_reason;  // the stop string, or null
    uint64_t seed = 0;
    size_t text_offset = 0;   // completions: characters before the next token's text
    bool started = false;     // streaming: the first chunk (role, echo) went out
    int32_t last_token = -1;  // the token before the next one: its text depends on it
    // Chat with tools: the text split into content and calls (`text` stays the raw output).
    ToolCallParser tool_parser;
    std::string content;
    nlohmann::json tool_calls = nlohmann::json::array();  // OpenAI tool_call objects
  };

  // The part of a delta's text a chat client sees: content, plus calls completed by it (as
  // OpenAI tool_call objects, indexed within the choice) when the job parses tool calls.
  nlohmann::json content_delta(Choice& c, size_t index, const std::string& text, bool finished,
                               std::string& content);

  std::string token_text(int32_t id, int32_t prev) const;
  void append_completion_logprob(Choice& c, int32_t token, const engine::TokenLogprob* lp,
                                 nlohmann::json& out);
  nlohmann::json chat_logprob(Choice& c, const engine::TokenLogprob& lp) const;
  nlohmann::json usage() const;
  nlohmann::json chunk(nlohmann::json choices) const;
  void echo_prompt(Choice& c, int prompt_index, const engine::RequestOutput& out,
                   nlohmann::json& logprobs);

  const GenerationJob& job_;
  const ModelInfo& model_;
  const std::string id_;
  const int64_t created_;
  std::vector<Choice> choices_;                                                    // [prompts * n]
  std::vector<int> prompt_tokens_;                                                 // [prompts]
  std::vector<std::optional<std::vector<engine::TokenLogprob>>> prompt_logprobs_;  // [prompts]
};

// A logprob as JSON: the float widened to double (exact); -inf becomes -9999.0 as in vLLM, since
// JSON has no infinity.
nlohmann::json logprob_json(float lp);

}  // namespace bitexact::server
