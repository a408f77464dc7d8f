// Tool calls in chat output, as Qwen3 and Hermes-style templates ask models to write them:
// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks inside the text. A streaming
// parser splits text deltas into content (what lies outside the blocks) and complete calls; the
// whole-text parse is the same parser fed once, so streamed and non-streamed answers agree.
#pragma once

#include <string>
#include <vector>

namespace bitexact::server {

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text, as OpenAI's `function.arguments`
};

// What a piece of output adds to a choice: content text and calls completed in it.
struct ToolCallDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

// Feeds output text in any splitting; emits content as soon as it cannot be part of a tag, and
// each call once its closing tag arrived. Rules (DESIGN in docs/notes/server.md):
// - a block whose body is not a JSON object with a string `name` is not a call: it stays content;
// - `arguments` (or `parameters`) is re-serialised when it is JSON other than a string, and passed
//   through when it is a string; absent, it is "{}";
// - outside text that is only whitespace and borders a call is dropped (the newlines around
//   blocks), so content is empty when the output is calls alone; an unclosed block is content.
class ToolCallParser {
 public:
  ToolCallDelta push(const std::string& text);
  // The end of the output: held-back text becomes content (an unclosed block included).
  ToolCallDelta finish();
  int num_calls() const { return num_calls_; }

 private:
  void emit_outside(const std::string& text, ToolCallDelta& out);
  void close_block(ToolCallDelta& out);

  std::string pending_;        // unemitted text: a possible tag prefix, or an open block's body
  bool in_block_ = false;      // pending_ is the body of a block whose start tag was read
  bool segment_text_ = false;  // the outside text since the last call has non-whitespace
  std::string held_space_;     // whitespace-only outside text since the last call, not yet emitted
  int num_calls_ = 0;
};

// The whole output at once.
ToolCallDelta parse_tool_calls(const std::string& text);

}  // namespace bitexact::server
