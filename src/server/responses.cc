// Response and chunk formatting for /v1/completions and /v1/chat/completions, including both
// logprob formats (completions: parallel lists + text_offset; chat: content entries with bytes)
// and the per-choice `seed` extension that lets any sample be reproduced.
#include "server/responses.h"

#include <chrono>
#include <cmath>

namespace bitexact::server {

using nlohmann::json;

namespace {

size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

}  // namespace

json logprob_json(float lp) { return std::isinf(lp) && lp < 0 ? -9999.0 : double(lp); }

ResponseBuilder::ResponseBuilder(const GenerationJob& job, const ModelInfo& model, std::string id)
    : job_(job),
      model_(model),
      id_(std::move(id)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      choices_(job.prompts.size() * size_t(job.n)),
      prompt_tokens_(job.prompts.size()),
      prompt_logprobs_(job.prompts.size()) {
  for (size_t p = 0; p < job.prompts.size(); ++p) prompt_tokens_[p] = int(job.prompts[p].size());
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    const auto& prompt = job.prompts[i / size_t(job.n)];
    if (!job.echo && !prompt.empty()) c.last_token = prompt.back();
    if (job.logprobs < 0) continue;
    if (job.kind == ApiKind::kChat) {
      c.logprobs = {{"content", json::array()}};
    } else {
      c.logprobs = {{"tokens", json::array()},
                    {"token_logprobs", json::array()},
                    {"top_logprobs", json::array()},
                    {"text_offset", json::array()}};
      // OpenAI counts offsets from the start of the prompt; with echo the prompt is in the text.
      if (!job.echo) c.text_offset = utf8_chars(job.prompt_texts[i / size_t(job.n)]);
    }
  }
}

// A token's text as it reads after `prev` (-1: none): decoded alone, a SentencePiece token loses
// its leading space, so the logprob tokens would not concatenate to the text.
std::string ResponseBuilder::token_text(int32_t id, int32_t prev) const {
  if (!model_.tokenizer) return "";
  const int32_t one[1] = {id};
  if (prev < 0 || model_.tokenizer->is_special(prev)) return model_.tokenizer->decode(one, false);
  const int32_t pair[2] = {prev, id}, before[1] = {prev};
  const std::string both = model_.tokenizer->decode(pair, false),
                    head = model_.tokenizer->decode(before, false);
  if (both.size() >= head.size() && both.compare(0, head.size(), head) == 0)
    return both.substr(head.size());
  return model_.tokenizer->decode(one, false);
}

// One token in the completions format. `lp` null: the first prompt token, which has no logprob.
void ResponseBuilder::append_completion_logprob(Choice& c, int32_t token,
                                                const engine::TokenLogprob* lp, json& out) {
  const std::string text = token_text(token, c.last_token);
  out["tokens"].push_back(text);
  out["text_offset"].push_back(c.text_offset);
  c.text_offset += utf8_chars(text);
  const int32_t prev = c.last_token;
  c.last_token = token;
  if (!lp) {
    out["token_logprobs"].push_back(nullptr);
    out["top_logprobs"].push_back(nullptr);
    return;
  }
  out["token_logprobs"].push_back(logprob_json(lp->logprob));
  // As vLLM: the top N, plus the chosen token when it is not among them.
  json top = json::object();
  for (const auto& [id, v] : lp->top) top[token_text(id, prev)] = logprob_json(v);
  const std::string chosen = text;
  if (!top.contains(chosen)) top[chosen] = logprob_json(lp->logprob);
  out["top_logprobs"].push_back(top);
}

json ResponseBuilder::chat_logprob(Choice& c, const engine::TokenLogprob& lp) const {
  const int32_t prev = c.last_token;
  c.last_token = lp.token;
  const std::string text = token_text(lp.token, prev);
  json top = json::array();
  for (const auto& [id, v] : lp.top) {
    const std::string t = token_text(id, prev);
    top.push_back({{"token", t}, {"logprob", logprob_json(v)}, {"bytes", bytes_of(t)}});
  }
  return {{"token", text},
          {"logprob", logprob_json(lp.logprob)},
          {"bytes", bytes_of(text)},
          {"top_logprobs", top}};
}

void ResponseBuilder::echo_prompt(Choice& c, int p, const engine::RequestOutput& out,
                                  json& logprobs) {
  (void)out;
  c.text += job_.prompt_texts[size_t(p)];
  if (job_.logprobs < 0) return;
  const auto& ids = job_.prompts[size_t(p)];
  const auto& lps = prompt_logprobs_[size_t(p)];
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool have = i > 0 && lps && i < lps->size();
    append_completion_logprob(c, ids[i], have ? &(*lps)[i] : nullptr, logprobs);
  }
}

json ResponseBuilder::content_delta(Choice& c, size_t index, const std::string& text, bool finished,
                                    std::string& content) {
  json calls = json::array();
  if (!job_.parse_tool_calls) {
    content = text;
    c.content += text;
    return calls;
  }
  ToolCallDelta d = c.tool_parser.push(text);
  if (finished) {
    ToolCallDelta rest = c.tool_parser.finish();
    d.content += rest.content;
    for (ToolCall& call : rest.calls) d.calls.push_back(std::move(call));
  }
  content = std::move(d.content);
  c.content += content;
  for (const ToolCall& call : d.calls) {
    // Unique within the response (choice, then call), and across responses by the response id.
    const size_t k = c.tool_calls.size();
    json tc = {{"id", "call_" + id_ + "_" + std::to_string(index) + "_" + std::to_string(k)},
               {"type", "function"},
               {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
    c.tool_calls.push_back(tc);
    tc["index"] = k;  // streaming deltas say which call they belong to
    calls.push_back(std::move(tc));
  }
  return calls;
}

std::vector<json> ResponseBuilder::add(const engine::RequestOutput& out, int p) {
  if (out.prompt_logprobs) prompt_logprobs_[size_t(p)] = out.prompt_logprobs;
  if (out.num_prompt_tokens > 0) prompt_tokens_[size_t(p)] = out.num_prompt_tokens;
  const bool chat = job_.kind == ApiKind::kChat;
  std::vector<json> chunks;
  for (const engine::SampleDelta& d : out.samples) {
    const size_t index = size_t(p) * size_t(job_.n) + size_t(d.index);
    if (index >= choices_.size()) continue;
    Choice& c = choices_[index];
    c.seed = d.seed;
    // The part of the choice this delta adds, in the choice's own format.
    std::string text;
    json lps = job_.logprobs < 0 ? json(nullptr)
               : chat            ? json{{"content", json::array()}}
                                 : json{{"tokens", json::array()},
                             {"token_logprobs", json::array()},
                             {"top_logprobs", json::array()},
                             {"text_offset", json::array()}};
    const bool first = !c.started;
    if (first && job_.echo) {
      const size_t before = c.text.size();
      echo_prompt(c, p, out, lps);
      text = c.text.substr(before);
    }
    c.started = true;
    c.text += d.text;
    text += d.text;
    c.token_ids.insert(c.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    if (job_.logprobs >= 0) {
      for (size_t i = 0; i < d.logprobs.size(); ++i) {
        if (chat)
          lps["content"].push_back(chat_logprob(c, d.logprobs[i]));
        else
          append_completion_logprob(c, d.logprobs[i].token, &d.logprobs[i], lps);
      }
      for (auto& [key, list] : lps.items())
        for (auto& x : list) c.logprobs[key].push_back(x);
    }
    std::string content;
    const json calls = chat ? content_delta(c, index, text, d.finished, content) : json::array();
    if (d.finished) {
      // As vLLM: a choice that called tools says so, whatever ended its generation.
      c.finish_reason = c.tool_calls.empty() ? d.finish_reason : "tool_calls";
      c.stop_reason = d.stop_reason ? json(*d.stop_reason) : json(nullptr);
    }
    if (!job_.stream) continue;
    const json finish = d.finished ? json(c.finish_reason) : json(nullptr);
    if (chat) {
      if (first)
        chunks.push_back(chunk(json::array({{{"index", index},
                                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                                             {"logprobs", nullptr},
                                             {"finish_reason", nullptr},
                                             {"seed", c.seed}}})));
      const bool has_lps = job_.logprobs >= 0 && !lps["content"].empty();
      if (content.empty() && calls.empty() && !has_lps && !d.finished) continue;
      json delta = json::object();
      if (!content.empty() || (calls.empty() && !d.finished)) delta["content"] = content;
      if (!calls.empty()) delta["tool_calls"] = calls;
      chunks.push_back(chunk(json::array({{{"index", index},
                                           {"delta", delta},
                                           {"logprobs", lps},
                                           {"finish_reason", finish},
                                           {"stop_reason", c.stop_reason},
                                           {"seed", c.seed}}})));
    } else {
      if (text.empty() && d.token_ids.empty() && !d.finished) continue;
      chunks.push_back(chunk(json::array({{{"index", index},
                                           {"text", text},
                                           {"logprobs", lps},
                                           {"finish_reason", finish},
                                           {"stop_reason", c.stop_reason},
                                           {"seed", c.seed}}})));
    }
  }
  return chunks;
}

json ResponseBuilder::usage() const {
  int prompt = 0, completion = 0;
  for (int t : prompt_tokens_) prompt += t;
  for (const Choice& c : choices_) completion += int(c.token_ids.size());
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

json ResponseBuilder::chunk(json choices) const {
  const bool chat = job_.kind == ApiKind::kChat;
  return {{"id", id_},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created_},
          {"model", model_.served_name},
          {"system_fingerprint", "bitexact"},
          {"choices", std::move(choices)}};
}

json ResponseBuilder::usage_chunk() const {
  json c = chunk(json::array());
  c["usage"] = usage();
  return c;
}

json ResponseBuilder::final_body() const {
  const bool chat = job_.kind == ApiKind::kChat;
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    const json finish = c.finish_reason.empty() ? json(nullptr) : json(c.finish_reason);
    json choice = {{"index", i},
                   {"logprobs", c.logprobs},
                   {"finish_reason", finish},
                   {"stop_reason", c.stop_reason},
                   {"seed", c.seed},
                   {"token_ids", c.token_ids}};
    if (chat)
      // With calls, content is null when nothing but the calls was written (as OpenAI).
      choice["message"] = {
          {"role", "assistant"},
          {"content", c.content.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.content)},
          {"tool_calls", c.tool_calls}};
    else
      choice["text"] = c.text;
    choices.push_back(std::move(choice));
  }
  return {{"id", id_},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created_},
          {"model", model_.served_name},
          {"system_fingerprint", "bitexact"},
          {"choices", choices},
          {"usage", usage()}};
}

}  // namespace bitexact::server
