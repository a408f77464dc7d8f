// Request parsing for the generation endpoints: typed field readers that reject a wrong type or
// range with a 400 naming the field, the prompt forms of /v1/completions, chat rendering, and the
// context-length check. vLLM's extensions (top_k, min_p, ignore_eos, min_tokens, ...) are read too.
#include "server/protocol.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "server/api_error.h"

namespace bitexact::server {
namespace {

using nlohmann::json;

bool has(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

int64_t get_int(const json& body, const char* key, int64_t def, int64_t lo, int64_t hi) {
  if (!has(body, key)) return def;
  const json& v = body[key];
  // 2.0 is accepted as 2, as Python clients may send floats for integral fields. The range is
  // checked before the cast: converting a double past int64's range is undefined (found by
  // fuzz_request with "max_tokens": 7.7e35).
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) != d) bad_request(key, "must be an integer");
    if (!(std::fabs(d) < 9.0e18))
      bad_request(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return get_int(json{{key, int64_t(d)}}, key, def, lo, hi);
  }
  if (!v.is_number_integer()) bad_request(key, "must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad_request(key, "must be at most " + std::to_string(hi));
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad_request(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                         ", got " + std::to_string(x));
  return x;
}

double get_double(const json& body, const char* key, double def) {
  if (!has(body, key)) return def;
  if (!body[key].is_number()) bad_request(key, "must be a number");
  return body[key].get<double>();
}

bool get_bool(const json& body, const char* key, bool def) {
  if (!has(body, key)) return def;
  if (!body[key].is_boolean()) bad_request(key, "must be true or false");
  return body[key].get<bool>();
}

// Parameters the engine has no implementation for: accepted at their neutral value, rejected
// otherwise, so that a client never gets output silently computed without them.
void reject_unsupported(const json& body) {
  auto neutral = [&](const char* key, double neutral_value) {
    if (has(body, key) && get_double(body, key, neutral_value) != neutral_value)
      bad_request(key, "is not supported by this server (only " + json(neutral_value).dump() + ")");
  };
  neutral("length_penalty", 1.0);  // a beam-search parameter; beam search is not supported
  if (has(body, "logit_bias") && !(body["logit_bias"].is_object() && body["logit_bias"].empty()))
    bad_request("logit_bias", "is not supported by this server");
  if (get_bool(body, "use_beam_search", false)) bad_request("use_beam_search", "is not supported");
  if (get_bool(body, "include_stop_str_in_output", false))
    bad_request("include_stop_str_in_output", "is not supported");
  if (has(body, "suffix")) bad_request("suffix", "is not supported");
  if (has(body, "prompt_logprobs"))
    bad_request("prompt_logprobs", "is not supported; use `echo` with `logprobs`");
  for (const char* key :
       {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs"})
    if (has(body, key)) bad_request(key, "is not supported");
  if (has(body, "response_format")) {
    const json& rf = body["response_format"];
    if (!rf.is_object() || rf.value("type", json()) != "text")
      bad_request("response_format", "only {\"type\": \"text\"} is supported");
  }
}

// Sampling, stopping and streaming fields shared by both endpoints.
void parse_common(const json& body, const ModelInfo& model, GenerationJob& job) {
  reject_unsupported(body);
  engine::SamplingParams& p = job.params;
  p.temperature = get_double(body, "temperature", 1.0);
  p.top_p = get_double(body, "top_p", 1.0);
  p.top_k = int(get_int(body, "top_k", 0, -1, std::numeric_limits<int32_t>::max()));
  p.min_p = get_double(body, "min_p", 0.0);
  // Ranges are SamplingParams::validate()'s (check_context), which names the field at fault.
  p.presence_penalty = get_double(body, "presence_penalty", 0.0);
  p.frequency_penalty = get_double(body, "frequency_penalty", 0.0);
  p.repetition_penalty = get_double(body, "repetition_penalty", 1.0);
  if (has(body, "seed")) {
    const json& s = body["seed"];
    if (!s.is_number_integer() ||
        (s.is_number_integer() && !s.is_number_unsigned() && s.get<int64_t>() < 0))
      bad_request("seed", "must be a non-negative integer");
    p.seed = s.get<uint64_t>();
  }
  p.ignore_eos = get_bool(body, "ignore_eos", false);
  p.min_tokens = int(get_int(body, "min_tokens", 0, 0, model.max_model_len));
  job.n = int(get_int(body, "n", 1, 1, 128));
  if (has(body, "best_of") && get_int(body, "best_of", job.n, 1, 128) != job.n)
    bad_request("best_of", "is not supported (must equal n)");
  job.skip_special_tokens = get_bool(body, "skip_special_tokens", true);
  if (has(body, "stop_token_ids")) {
    if (!body["stop_token_ids"].is_array())
      bad_request("stop_token_ids", "must be a list of token ids");
    p.stop_token_ids = parse_token_ids(body["stop_token_ids"], model, "stop_token_ids");
  }
  if (has(body, "stop")) {
    const json& s = body["stop"];
    if (s.is_string()) {
      job.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const json& x : s) {
        if (!x.is_string()) bad_request("stop", "must be a string or a list of strings");
        job.stop.push_back(x.get<std::string>());
      }
    } else {
      bad_request("stop", "must be a string or a list of strings");
    }
    for (const std::string& x : job.stop)
      if (x.empty()) bad_request("stop", "stop strings must not be empty");
    if (!job.stop.empty() && !model.tokenizer)
      bad_request("stop", "stop strings need a tokenizer, and this model has none");
  }
  job.stream = get_bool(body, "stream", false);
  if (has(body, "stream_options")) {
    if (!job.stream) bad_request("stream_options", "may only be set when `stream` is true");
    if (!body["stream_options"].is_object()) bad_request("stream_options", "must be an object");
    job.include_usage = get_bool(body["stream_options"], "include_usage", false);
  }
}

// max_tokens against the context: vLLM's wording, so that clients that parse it keep working.
void check_context(GenerationJob& job, const ModelInfo& model, bool default_to_rest,
                   const json& body, const char* max_key) {
  for (const auto& prompt : job.prompts) {
    const int64_t len = int64_t(prompt.size());
    if (len >= model.max_model_len)
      bad_request("", "This model's maximum context length is " +
                          std::to_string(model.max_model_len) +
                          " tokens. However, your prompt has " + std::to_string(len) +
                          " tokens. Please reduce the length of the prompt.");
    if (default_to_rest && !has(body, max_key))
      job.params.max_tokens = std::min<int64_t>(job.params.max_tokens, model.max_model_len - len);
    if (len + job.params.max_tokens > model.max_model_len)
      bad_request(max_key,
                  "This model's maximum context length is " + std::to_string(model.max_model_len) +
                      " tokens. However, you requested " +
                      std::to_string(len + job.params.max_tokens) + " tokens (" +
                      std::to_string(len) + " in the prompt, " +
                      std::to_string(job.params.max_tokens) +
                      " in the completion). Please reduce the length of the prompt or completion.");
  }
  if (job.params.min_tokens > job.params.max_tokens)
    bad_request("min_tokens", "must not exceed max_tokens");
  try {
    job.params.validate();
  } catch (const Error& e) {
    // validate()'s messages start with the field's name, which is the request's parameter name.
    const std::string what = e.what();
    const std::string field = what.substr(0, what.find(' '));
    bad_request(body.contains(field) ? field : "", what);
  }
}

std::string flatten_content(const json& content) {
  if (content.is_string() || content.is_null())
    return content.is_null() ? "" : content.get<std::string>();
  if (!content.is_array())
    bad_request("messages", "message content must be a string or a list of parts");
  std::string out;
  for (const json& part : content) {
    // value(key, json()) compares without converting: value(key, "") throws on a non-string
    // (found by fuzz_request: a 500 instead of a 400).
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      bad_request("messages", "only text content parts are supported");
    if (!out.empty()) out += "\n";  // vLLM joins text parts with newlines
    out += part["text"].get<std::string>();
  }
  return out;
}

}  // namespace

void check_model_name(const json& body, const ModelInfo& model) {
  if (!has(body, "model")) return;
  if (!body["model"].is_string()) bad_request("model", "must be a string");
  if (body["model"].get<std::string>() != model.served_name)
    throw ApiError(404, "The model `" + body["model"].get<std::string>() + "` does not exist.",
                   "model");
}

std::vector<int32_t> parse_token_ids(const json& value, const ModelInfo& model,
                                     const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (const json& x : value) {
    if (!x.is_number_integer()) bad_request(param, "token ids must be integers");
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= model.vocab_size)
      bad_request(param, "token id " + std::to_string(id) + " is out of vocabulary (size " +
                             std::to_string(model.vocab_size) + ")");
    ids.push_back(int32_t(id));
  }
  return ids;
}

GenerationJob parse_completion_request(const json& body, const ModelInfo& model) {
  check_model_name(body, model);
  GenerationJob job;
  job.kind = ApiKind::kCompletion;
  parse_common(body, model, job);
  if (!has(body, "prompt")) bad_request("prompt", "is required");
  const json& prompt = body["prompt"];
  auto encode = [&](const json& text) {
    if (!model.tokenizer) bad_request("prompt", "this model has no tokenizer; send token ids");
    if (text.get<std::string>().empty()) bad_request("prompt", "must not be empty");
    try {
      return model.tokenizer->encode(text.get<std::string>(), /*add_special_tokens=*/true);
    } catch (const Error& e) {
      bad_request("prompt", e.what());
    }
  };
  if (prompt.is_string()) {
    job.prompts.push_back(encode(prompt));
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
    job.prompts.push_back(parse_token_ids(prompt, model, "prompt"));
  } else if (prompt.is_array() && !prompt.empty()) {
    for (const json& p : prompt) {
      if (p.is_string())
        job.prompts.push_back(encode(p));
      else if (p.is_array())
        job.prompts.push_back(parse_token_ids(p, model, "prompt"));
      else
        bad_request("prompt", "must be a string, a list of strings, or token ids");
    }
  } else {
    bad_request("prompt", "must be a non-empty string, list of strings, or token ids");
  }
  for (const auto& ids : job.prompts)
    if (ids.empty()) bad_request("prompt", "must not be empty");
  if (job.prompts.size() * size_t(job.n) > 1024)
    bad_request("prompt", "at most 1024 sequences per request");

  job.params.max_tokens = int(get_int(body, "max_tokens", 16, 0, model.max_model_len));
  job.echo = get_bool(body, "echo", false);
  if (has(body, "logprobs")) {
    if (body["logprobs"].is_boolean())
      bad_request("logprobs", "must be an integer for completions");
    job.logprobs = int(get_int(body, "logprobs", -1, 0, model.max_logprobs));
  }
  job.params.logprobs = job.logprobs;
  // The prompt's text is needed to echo it and for text_offset; a string prompt echoes as sent.
  for (size_t i = 0; i < job.prompts.size(); ++i) {
    const json& p = prompt.is_string()              ? prompt
                    : prompt[0].is_number_integer() ? prompt
                                                    : prompt[i];
    if (p.is_string())
      job.prompt_texts.push_back(p.get<std::string>());
    else if (model.tokenizer && (job.echo || job.logprobs >= 0))
      job.prompt_texts.push_back(
          model.tokenizer->decode(job.prompts[i], /*skip_special_tokens=*/true));
    else
      job.prompt_texts.emplace_back();
  }
  check_context(job, model, /*default_to_rest=*/false, body, "max_tokens");
  return job;
}

std::string render_chat(const json& body, const ModelInfo& model) {
  if (!has(body, "messages") || !body["messages"].is_array() || body["messages"].empty())
    bad_request("messages", "must be a non-empty list of messages");
  if (!model.tokenizer) bad_request("messages", "this model has no tokenizer");
  tok::ChatTemplateInputs in;
  in.messages = tok::OrderedJson::array();
  for (const json& m : body["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      bad_request("messages", "each message must be an object with a string `role`");
    tok::OrderedJson msg = tok::OrderedJson::parse(m.dump());
    if (m.contains("content")) msg["content"] = flatten_content(m["content"]);
    in.messages.push_back(std::move(msg));
  }
  if (has(body, "tools")) {
    if (!body["tools"].is_array()) bad_request("tools", "must be a list");
    for (const json& t : body["tools"])
      if (!t.is_object() || t.value("type", json()) != "function" || !t.contains("function") ||
          !t["function"].is_object() || !t["function"].contains("name") ||
          !t["function"]["name"].is_string())
        bad_request("tools",
                    "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
    in.tools = tok::OrderedJson::parse(body["tools"].dump());
  }
  if (has(body, "tool_choice")) {
    const json& tc = body["tool_choice"];
    if (!tc.is_string() || (tc != "none" && tc != "auto"))
      bad_request("tool_choice", "only \"auto\" and \"none\" are supported");
  }
  in.add_generation_prompt = get_bool(body, "add_generation_prompt", true);
  if (get_bool(body, "continue_final_message", false))
    bad_request("continue_final_message", "is not supported");
  in.extra = tok::OrderedJson::object();
  if (has(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object())
      bad_request("chat_template_kwargs", "must be an object");
    in.extra = tok::OrderedJson::parse(body["chat_template_kwargs"].dump());
  }
  in.bos_token = model.tokenizer->config().bos_token;
  in.eos_token = model.tokenizer->config().eos_token;
  try {
    if (has(body, "chat_template")) {
      if (!body["chat_template"].is_string()) bad_request("chat_template", "must be a string");
      return tok::ChatTemplate(body["chat_template"].get<std::string>()).render(in);
    }
    if (!model.chat_template)
      bad_request("messages",
                  "this model has no chat template; start the server with --chat-template FILE");
    return model.chat_template->render(in);
  } catch (const Error& e) {
    // Template errors are the request's fault (raise_exception, bad roles) or its template's.
    if (e.kind() == ErrorKind::kInternal) throw;
    bad_request("messages", std::string("chat template: ") + e.what());
  }
}

GenerationJob parse_chat_request(const json& body, const ModelInfo& model) {
  check_model_name(body, model);
  GenerationJob job;
  job.kind = ApiKind::kChat;
  parse_common(body, model, job);
  const std::string prompt = render_chat(body, model);
  try {
    // The template writes the special tokens itself, so none are added here (as vLLM does).
    job.prompts.push_back(model.tokenizer->encode(prompt, /*add_special_tokens=*/false));
  } catch (const Error& e) {
    bad_request("messages", e.what());
  }
  if (job.prompts[0].empty()) bad_request("messages", "the rendered prompt is empty");
  const char* max_key = has(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  job.params.max_tokens = int(get_int(body, max_key, model.max_model_len, 1, model.max_model_len));
  if (get_bool(body, "logprobs", false)) {
    job.logprobs = int(get_int(body, "top_logprobs", 0, 0, model.max_logprobs));
  } else if (has(body, "top_logprobs") &&
             get_int(body, "top_logprobs", 0, 0, model.max_logprobs) > 0) {
    bad_request("top_logprobs", "requires `logprobs` to be true");
  }
  job.params.logprobs = job.logprobs;
  if (get_bool(body, "echo", false)) bad_request("echo", "is not supported for chat");
  // render_chat() checked `tools` and `tool_choice`.
  job.parse_tool_calls = has(body, "tools") && !body["tools"].empty() &&
                         !(has(body, "tool_choice") && body["tool_choice"] == "none");
  check_context(job, model, /*default_to_rest=*/true, body, max_key);
  return job;
}

}  // namespace bitexact::server
