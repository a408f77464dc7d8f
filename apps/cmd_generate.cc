// `bitexact generate`: completions for prompts from the command line or a JSONL file, run on the
// continuous-batching engine (all requests submitted at once, scheduled by it) and written as
// JSONL in input order: token_ids, text, logprobs printed to round-trip exactly, seed,
// finish_reason. With n > 1 the top-level fields are sample 0's and a `samples` array holds all.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/model_session.h"
#include "engine/engine.h"

namespace bitexact::apps {
namespace {

using nlohmann::json;

[[noreturn]] void bad_line(size_t line, const std::string& msg) {
  fail(ErrorKind::kInvalidArgument, "input line " + std::to_string(line) + ": " + msg);
}

// Per-request fields of an input line override the command-line defaults.
engine::SamplingParams params_from_json(const json& j, engine::SamplingParams p, size_t line) {
  auto num = [&](const char* key, auto& field) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_number()) bad_line(line, std::string("`") + key + "` must be a number");
    field = j[key].get<std::decay_t<decltype(field)>>();
  };
  num("max_tokens", p.max_tokens);
  num("min_tokens", p.min_tokens);
  num("temperature", p.temperature);
  num("top_p", p.top_p);
  num("top_k", p.top_k);
  num("min_p", p.min_p);
  num("logprobs", p.logprobs);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) bad_line(line, "`seed` must be an integer");
    p.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("ignore_eos")) p.ignore_eos = j["ignore_eos"].get<bool>();
  if (j.contains("stop_token_ids")) p.stop_token_ids = j["stop_token_ids"].get<std::vector<int32_t>>();
  return p;
}

std::vector<int32_t> prompt_ids(const json& j, const ModelSession& s, size_t line) {
  if (j.contains("prompt_token_ids")) {
    if (!j["prompt_token_ids"].is_array()) bad_line(line, "`prompt_token_ids` must be a list");
    return j["prompt_token_ids"].get<std::vector<int32_t>>();
  }
  if (!j.contains("prompt") || !j["prompt"].is_string()) bad_line(line, "needs `prompt` (text) or `prompt_token_ids`");
  if (!s.tokenizer)
    fail(ErrorKind::kInvalidArgument, "this model has no tokenizer; give `prompt_token_ids` instead of `prompt`");
  return s.tokenizer->encode(j["prompt"].get<std::string>(), true);
}

engine::RequestSpec request_from_json(const json& j, const ModelSession& s, const engine::SamplingParams& defaults,
                                      size_t line) {
  engine::RequestSpec r;
  r.prompt = prompt_ids(j, s, line);
  r.params = params_from_json(j, defaults, line);
  if (j.contains("n") && !j["n"].is_null()) {
    if (!j["n"].is_number_integer()) bad_line(line, "`n` must be an integer");
    r.n = j["n"].get<int>();
  }
  if (j.contains("prompt_logprobs") && !j["prompt_logprobs"].is_null()) {
    if (!j["prompt_logprobs"].is_number_integer()) bad_line(line, "`prompt_logprobs` must be an integer");
    r.prompt_logprobs = j["prompt_logprobs"].get<int>();
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    if (j["stop"].is_string()) r.stop = {j["stop"].get<std::string>()};
    else if (j["stop"].is_array()) r.stop = j["stop"].get<std::vector<std::string>>();
    else bad_line(line, "`stop` must be a string or a list of strings");
  }
  return r;
}

json top_json(const std::vector<std::pair<int32_t, float>>& top) {
  json row = json::array();
  for (auto [id, lp] : top) row.push_back({{"token_id", id}, {"logprob", double(lp)}});  // floats are exact as doubles
  return row;
}

// One sample, accumulated over the engine's deltas.
struct SampleOut {
  std::vector<int32_t> token_ids;
  std::vector<engine::TokenLogprob> logprobs;
  std::string text, finish_reason;
  std::optional<std::string> stop_reason;
  uint64_t seed = 0;
};

json sample_json(const SampleOut& o, bool with_top) {
  json j = {{"token_ids", o.token_ids}, {"text", o.text}, {"seed", o.seed}, {"finish_reason", o.finish_reason}};
  j["stop_reason"] = o.stop_reason ? json(*o.stop_reason) : json(nullptr);
  json lps = json::array(), tops = json::array();
  for (const auto& t : o.logprobs) {
    lps.push_back(double(t.logprob));
    tops.push_back(top_json(t.top));
  }
  j["logprobs"] = lps;
  if (with_top) j["top_logprobs"] = tops;
  return j;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  CLI::App app{"Generate completions; JSONL in, JSONL out.", "bitexact generate"};
  std::string model_path, input, output, device = "cpu";
  std::vector<std::string> prompts;
  engine::SamplingParams defaults;
  defaults.logprobs = 0;  // the sampled token's logprob is always part of the output (ARCHITECTURE.md 4)
  engine::EngineConfig ec;
  uint64_t seed = 0;
  double kv_cache_mb = 0;
  bool no_invariant = false, no_prefix_caching = false;
  LoadFlags load;
  ParallelFlags parallel;
  app.add_option("--model", model_path, "Hugging Face model folder or .gguf file")->required();
  app.add_option("--prompt", prompts, "a prompt (repeatable)");
  app.add_option("--input", input,
                 "JSONL: one object per line with `prompt` or `prompt_token_ids`, and optionally max_tokens, "
                 "min_tokens, temperature, top_p, top_k, min_p, seed, logprobs, ignore_eos, stop_token_ids, "
                 "n, stop, prompt_logprobs");
  app.add_option("--output", output, "JSONL output file (default: stdout)");
  app.add_option("--max-tokens", defaults.max_tokens, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", defaults.temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-p", defaults.top_p)->capture_default_str();
  app.add_option("--top-k", defaults.top_k, "0 = off")->capture_default_str();
  app.add_option("--min-p", defaults.min_p)->capture_default_str();
  auto* seed_opt = app.add_option("--seed", seed, "sampling seed (default: a fresh one, reported)");
  app.add_option("--logprobs", defaults.logprobs, "also return the top N logprobs per token")->capture_default_str();
  app.add_flag("--ignore-eos", defaults.ignore_eos, "keep generating past end-of-sequence");
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  load.add_to(app);
  parallel.add_to(app);
  app.add_flag("--no-batch-invariant", no_invariant, "fast batch-dependent kernels (for comparison)");
  app.add_option("--max-num-seqs", ec.max_num_seqs, "running sequences at most")->capture_default_str();
  app.add_option("--max-num-batched-tokens", ec.max_num_batched_tokens, "tokens per forward step")
      ->capture_default_str();
  app.add_option("--max-model-len", ec.max_model_len, "prompt + output tokens at most (default: the model's)");
  app.add_option("--kv-cache-mb", kv_cache_mb, "KV cache size in MiB (default 256)");
  app.add_flag("--no-prefix-caching", no_prefix_caching, "recompute shared prompt prefixes");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*seed_opt) defaults.seed = seed;
  if (prompts.empty() == input.empty()) fail(ErrorKind::kInvalidArgument, "give either --prompt (one or more) or --input FILE");
  if (kv_cache_mb < 0) fail(ErrorKind::kInvalidArgument, "--kv-cache-mb must be positive");
  if (kv_cache_mb > 0) ec.kv_cache_bytes = size_t(kv_cache_mb * 1024 * 1024);
  ec.enable_prefix_caching = !no_prefix_caching;

  model::ModelOptions options;
  options.device = parse_device(device);
  load.apply(options);
  parallel.apply(options);
  options.batch_invariant = !no_invariant;
  ModelSession s = open_model(model_path, options);
  ec.eos_ids = s.eos_ids;

  std::vector<engine::RequestSpec> requests;
  if (!input.empty()) {
    std::ifstream in(input);
    if (!in) fail(ErrorKind::kIo, "cannot open input file `" + input + "`");
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) bad_line(n, "not a JSON object");
      requests.push_back(request_from_json(j, s, defaults, n));
    }
  } else {
    for (const std::string& p : prompts) requests.push_back(request_from_json(json{{"prompt", p}}, s, defaults, 0));
  }

  engine::Engine eng(*s.model, s.tokenizer.get(), ec);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = std::to_string(i);
    try {
      eng.add_request(requests[i]);
    } catch (const Error& e) {
      fail(e.kind(), "request " + std::to_string(i) + ": " + e.what());
    }
  }
  std::vector<std::vector<SampleOut>> samples(requests.size());
  std::vector<std::optional<std::vector<engine::TokenLogprob>>> prompt_lps(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) samples[i].resize(size_t(requests[i].n));
  while (eng.has_unfinished()) {
    for (engine::RequestOutput& o : eng.step()) {
      const size_t i = std::stoul(o.id);
      if (o.prompt_logprobs) prompt_lps[i] = std::move(o.prompt_logprobs);
      for (engine::SampleDelta& d : o.samples) {
        SampleOut& so = samples[i][size_t(d.index)];
        so.token_ids.insert(so.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
        for (auto& t : d.logprobs) so.logprobs.push_back(std::move(t));
        so.text += d.text;
        so.seed = d.seed;
        if (d.finished) so.finish_reason = d.finish_reason, so.stop_reason = d.stop_reason;
      }
    }
  }

  std::ofstream file;
  if (!output.empty()) {
    file.open(output);
    if (!file) fail(ErrorKind::kIo, "cannot write output file `" + output + "`");
  }
  std::ostream& os = output.empty() ? std::cout : file;
  for (size_t i = 0; i < requests.size(); ++i) {
    const bool with_top = requests[i].params.logprobs > 0;
    json j = sample_json(samples[i][0], with_top);
    j["index"] = i;
    if (prompt_lps[i]) {
      json pl = json::array();
      for (size_t k = 0; k < prompt_lps[i]->size(); ++k) {
        const auto& t = (*prompt_lps[i])[k];
        if (k == 0) {
          pl.push_back(nullptr);  // no logits precede the first prompt token
          continue;
        }
        json e = {{"token_id", t.token}, {"logprob", double(t.logprob)}};
        if (requests[i].prompt_logprobs > 0) e["top"] = top_json(t.top);
        pl.push_back(e);
      }
      j["prompt_logprobs"] = pl;
    }
    if (requests[i].n > 1) {
      json all = json::array();
      for (size_t k = 0; k < samples[i].size(); ++k) {
        json sj = sample_json(samples[i][k], with_top);
        sj["index"] = k;
        all.push_back(sj);
      }
      j["samples"] = all;
    }
    os << j.dump() << "\n";
  }
  return 0;
}

}  // namespace bitexact::apps
