// libFuzzer target for the server's request parsing (src/server/protocol.cc, parse_body): the
// input is a request body, parsed as /v1/completions and as /v1/chat/completions against three
// served models (Qwen3's tokenizer and chat template with tools and thinking; stories260K with the
// test template; no tokenizer at all). The only accepted failure is ApiError with 400 or 404; any
// other exception, a crash, a hang or a sanitizer report is a finding. A request that parses must
// be one the engine can run: its prompts fit the context with max_tokens, every id is in the
// vocabulary, and its SamplingParams validate.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/protocol.h"
#include "server/server.h"

namespace {

using bitexact::server::ApiError;
using bitexact::server::GenerationJob;
using bitexact::server::ModelInfo;

// <repo>/fuzz/fuzz_request.cc -> <repo>
std::string repo_dir() {
  std::string f = __FILE__;
  return f.substr(0, f.rfind("/fuzz/"));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Served {
  std::unique_ptr<bitexact::tok::Tokenizer> tokenizer;
  ModelInfo info;
};

std::unique_ptr<Served> served(const std::string& tokenizer, const std::string& tmpl, int len) {
  auto s = std::make_unique<Served>();
  s->info.served_name = "m";
  s->info.max_model_len = len;
  s->info.vocab_size = 1000;
  if (!tokenizer.empty()) {
    s->tokenizer = bitexact::tok::load_tokenizer(tokenizer);
    s->info.tokenizer = s->tokenizer.get();
    s->info.vocab_size = s->tokenizer->vocab_size();
    const std::string source = tmpl.empty() ? s->tokenizer->config().chat_template : tmpl;
    if (!source.empty())
      s->info.chat_template = std::make_unique<bitexact::tok::ChatTemplate>(source);
  }
  return s;
}

const std::vector<std::unique_ptr<Served>>& models() {
  static const auto all = [] {
    const std::string repo = repo_dir(), shared = repo + "/../shared";
    std::vector<std::unique_ptr<Served>> v;
    v.push_back(served(shared + "/tokenizers/qwen3", "", 512));
    v.push_back(served(shared + "/models/stories260K.gguf",
                       read_file(repo + "/tests/server/chat_template.jinja"), 256));
    v.push_back(served("", "", 128));
    return v;
  }();
  return all;
}

// What the engine relies on in an accepted request.
void check_job(const GenerationJob& job, const ModelInfo& m) {
  if (job.prompts.empty() || job.n < 1 || job.n > 128) __builtin_trap();
  if (job.prompts.size() * size_t(job.n) > 1024) __builtin_trap();
  if (job.kind == bitexact::server::ApiKind::kCompletion &&
      job.prompt_texts.size() != job.prompts.size())
    __builtin_trap();
  for (const auto& p : job.prompts) {
    if (p.empty() || int64_t(p.size()) + job.params.max_tokens > m.max_model_len) __builtin_trap();
    for (int32_t id : p)
      if (id < 0 || id >= m.vocab_size) __builtin_trap();
  }
  if (job.logprobs > m.max_logprobs) __builtin_trap();
  try {
    job.params.validate();
  } catch (...) {
    __builtin_trap();  // protocol.cc must have turned this into a 400
  }
}

template <typename F>
void expect_api_error_only(F&& parse) {
  try {
    parse();
  } catch (const ApiError& e) {
    if (e.status() != 400 && e.status() != 404) __builtin_trap();
  }
  // Anything else propagates: libFuzzer reports an uncaught exception as a crash.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json body;
  try {
    body = bitexact::server::parse_body(text);
  } catch (const ApiError& e) {
    if (e.status() != 400) __builtin_trap();
    return 0;
  }
  for (const auto& s : models()) {
    expect_api_error_only(
        [&] { check_job(bitexact::server::parse_completion_request(body, s->info), s->info); });
    expect_api_error_only(
        [&] { check_job(bitexact::server::parse_chat_request(body, s->info), s->info); });
  }
  return 0;
}
