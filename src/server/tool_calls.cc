// The `<tool_call>` block parser: a small state machine over text deltas that holds back only
// what could still turn out to be a tag or a call (a partial start tag, an open block, whitespace
// that may border a call), so content streams with no more delay than the tags require.
#include "server/tool_calls.h"

#include <nlohmann/json.hpp>
#include <string_view>

namespace bitexact::server {
namespace {

constexpr std::string_view kOpen = "<tool_call>", kClose = "</tool_call>";

// The length of the longest suffix of `s` that is a proper prefix of `tag`: text that may still
// become the tag once the next delta arrives.
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

bool all_space(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') return false;
  return true;
}

// A block's body as a call, or false when it is not one. Key order is kept (ordered_json), so
// the arguments read as the model wrote them, only re-spaced.
bool parse_call(const std::string& body, ToolCall& call) {
  using Json = nlohmann::ordered_json;
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) return false;
  call.name = name->get<std::string>();
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (args == j.end() || args->is_null())
    call.arguments = "{}";
  else if (args->is_string())
    call.arguments = args->get<std::string>();
  else
    call.arguments = args->dump(-1, ' ', false, Json::error_handler_t::replace);
  return true;
}

}  // namespace

void ToolCallParser::emit_outside(const std::string& text, ToolCallDelta& out) {
  if (text.empty()) return;
  if (!segment_text_ && all_space(text)) {
    held_space_ += text;  // dropped if a call follows before any other text
    return;
  }
  out.content += held_space_;
  out.content += text;
  held_space_.clear();
  segment_text_ = true;
}

void ToolCallParser::close_block(ToolCallDelta& out) {
  const size_t end = pending_.find(kClose);
  const std::string body = pending_.substr(0, end);
  pending_.erase(0, end + kClose.size());
  in_block_ = false;
  ToolCall call;
  if (!parse_call(body, call)) {
    emit_outside(std::string(kOpen) + body + std::string(kClose), out);
    return;
  }
  held_space_.clear();  // whitespace-only text before a call is not content
  segment_text_ = false;
  out.calls.push_back(std::move(call));
  ++num_calls_;
}

ToolCallDelta ToolCallParser::push(const std::string& text) {
  ToolCallDelta out;
  pending_ += text;
  for (;;) {
    if (in_block_) {
      if (pending_.find(kClose) == std::string::npos) return out;
      close_block(out);
      continue;
    }
    const size_t at = pending_.find(kOpen);
    if (at == std::string::npos) {
      const size_t keep = partial_tag_suffix(pending_, kOpen);
      emit_outside(pending_.substr(0, pending_.size() - keep), out);
      pending_.erase(0, pending_.size() - keep);
      return out;
    }
    emit_outside(pending_.substr(0, at), out);
    pending_.erase(0, at + kOpen.size());
    in_block_ = true;
  }
}

ToolCallDelta ToolCallParser::finish() {
  ToolCallDelta out;
  emit_outside(in_block_ ? std::string(kOpen) + pending_ : pending_, out);
  pending_.clear();
  in_block_ = false;
  // Trailing whitespace after the last call is dropped; without calls the text is kept whole.
  if (num_calls_ == 0) out.content += held_space_;
  held_space_.clear();
  return out;
}

ToolCallDelta parse_tool_calls(const std::string& text) {
  ToolCallParser parser;
  ToolCallDelta all = parser.push(text);
  ToolCallDelta rest = parser.finish();
  all.content += rest.content;
  for (ToolCall& c : rest.calls) all.calls.push_back(std::move(c));
  return all;
}

}  // namespace bitexact::server
