// Chat-template rendering API: a Jinja interpreter for the subset of Jinja2 that Hugging Face chat
// templates use, rendering byte-for-byte as transformers' apply_chat_template(..., tokenize=False).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace bitexact::tok {

namespace jinja {
struct Program;
}

// JSON with insertion-ordered objects: `tools | tojson` must print keys in the caller's order, as
// Python's dicts do (nlohmann::json would sort them and change the prompt).
using OrderedJson = nlohmann::ordered_json;

struct ChatTemplateInputs {
  OrderedJson messages;  // array of {role, content, tool_calls?, reasoning_content?, ...}
  OrderedJson tools;     // null or array
  bool add_generation_prompt = false;
  OrderedJson extra;  // object of extra template kwargs, e.g. {"enable_thinking": false}
  // Special tokens as template variables; an empty one stays undefined (transformers passes only
  // the tokens a tokenizer has). Keys in `extra` override them, as kwargs do in transformers.
  std::string bos_token, eos_token;
};

struct ChatTemplateLimits {
  size_t max_output_bytes = size_t(64) << 20;
  uint64_t max_steps = 20'000'000;  // loop iterations, macro calls and filter element visits
  int max_call_depth = 64;          // nested macro calls
};

// Parsed once, rendered many times; render() is const and thread-safe.
class ChatTemplate {
 public:
  // Throws Error(kFormat) "template syntax error at line L, column C: ..." on syntax errors and on
  // unknown filters/tests outside if-blocks (where jinja2 fails at compile time too).
  explicit ChatTemplate(const std::string& source, ChatTemplateLimits limits = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Applies transformers' input normalisation (drops null message fields, aliases reasoning fields)
  // and renders. Throws Error(kInvalidArgument) for bad input, raise_exception(...) and template
  // runtime errors (with line/column), Error(kOutOfResources) past the limits.
  std::string render(const ChatTemplateInputs& in) const;

 private:
  std::unique_ptr<jinja::Program> program_;
  ChatTemplateLimits limits_;
};

}  // namespace bitexact::tok
