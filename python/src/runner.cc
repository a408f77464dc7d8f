// Runner: opens the model as the CLI does (apps/model_session), runs batches on one Engine and
// gathers each request's deltas into whole results, with decoded token strings for logprobs.
#include "python/src/runner.h"

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"

namespace bitexact::python {

namespace fs = std::filesystem;

namespace {

Device pick_device(const std::string& name) {
  if (name != "auto") return apps::parse_device(name);
  try {
    return apps::parse_device("cuda");
  } catch (const Error&) {
    return Device::kCpu;  // no CUDA in this build, or no GPU on this machine
  }
}

}  // namespace

Runner::Runner(const RunnerOptions& o) {
  if (o.load_format != "auto" && o.load_format != "dummy")
    fail(ErrorKind::kInvalidArgument,
         "load_format must be \"auto\" or \"dummy\", got \"" + o.load_format + "\"");
  if (o.max_model_len < 0) fail(ErrorKind::kInvalidArgument, "max_model_len must be positive");
  model::ModelOptions mo;
  mo.device = pick_device(o.device);
  mo.batch_invariant = o.batch_invariant;
  mo.dummy_weights = o.load_format == "dummy";
  mo.cuda_graphs = !o.enforce_eager;
  session_ = apps::open_model(o.model, mo);
  if (fs::is_directory(o.model))
    generation_ =
        io::load_generation_config((fs::path(o.model) / "generation_config.json").string());

  engine::EngineConfig ec;
  ec.eos_ids = session_.eos_ids;
  ec.max_model_len = o.max_model_len;
  ec.max_num_seqs = o.max_num_seqs;
  ec.max_num_batched_tokens = o.max_num_batched_tokens;
  if (o.kv_cache_bytes > 0) ec.kv_cache_bytes = o.kv_cache_bytes;
  ec.enable_prefix_caching = o.enable_prefix_caching;
  engine_ = std::make_unique<engine::Engine>(*session_.model, session_.tokenizer.get(), ec);

  info_.served_name = o.model;
  info_.path = o.model;
  info_.tokenizer = session_.tokenizer.get();
  info_.max_model_len = engine_->config().max_model_len;
  info_.vocab_size = vocab_size();
  if (session_.tokenizer && !session_.tokenizer->config().chat_template.empty())
    info_.chat_template =
        std::make_unique<tok::ChatTemplate>(session_.tokenizer->config().chat_template);
}

TokenLogprobs Runner::convert(const engine::TokenLogprob& t) const {
  auto entry = [&](int32_t id, float lp) {
    std::string text;
    if (session_.tokenizer)
      text = session_.tokenizer->decode(std::span<const int32_t>(&id, 1), false);
    return TokenEntry{id, lp, std::move(text)};
  };
  TokenLogprobs out;
  out.chosen = entry(t.token, t.logprob);
  for (auto [id, lp] : t.top) out.top.push_back(entry(id, lp));
  return out;
}

std::vector<RequestResult> Runner::generate(const std::vector<Request>& requests,
                                            const std::function<void(int)>& tick) {
  std::lock_guard lock(mu_);
  engine::Engine& e = *engine_;
  std::unordered_map<std::string, size_t> index;
  std::vector<std::string> ids;
  auto abort_all = [&] {
    for (const std::string& id : ids) e.abort(id);
    while (e.has_unfinished()) e.step();  // collects the aborts; nothing else runs here
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    engine::RequestSpec spec;
    spec.id = "py-" + std::to_string(next_id_++);
    spec.prompt = requests[i].prompt;
    spec.params = requests[i].params;
    spec.n = requests[i].n;
    spec.stop = requests[i].stop;
    spec.prompt_logprobs = requests[i].prompt_logprobs;
    spec.skip_special_tokens = requests[i].skip_special_tokens;
    try {
      e.add_request(spec);
    } catch (const Error& err) {
      abort_all();
      fail(err.kind(), "request " + std::to_string(i) + ": " + err.what());
    }
    index[spec.id] = i;
    ids.push_back(spec.id);
  }

  std::vector<RequestResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i].samples.resize(size_t(requests[i].n));
    for (int k = 0; k < requests[i].n; ++k) results[i].samples[size_t(k)].index = k;
  }
  int finished = 0;
  auto last_tick = std::chrono::steady_clock::now();
  try {
    while (e.has_unfinished()) {
      const int before = finished;
      for (engine::RequestOutput& o : e.step()) {
        RequestResult& r = results[index.at(o.id)];
        if (o.prompt_logprobs) {
          r.prompt_logprobs.emplace();
          for (const auto& t : *o.prompt_logprobs) r.prompt_logprobs->push_back(convert(t));
        }
        for (engine::SampleDelta& d : o.samples) {
          SampleResult& s = r.samples[size_t(d.index)];
          s.token_ids.insert(s.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
          for (const auto& t : d.logprobs) s.logprobs.push_back(convert(t));
          s.text += d.text;
          s.seed = d.seed;
          if (d.finished) s.finish_reason = d.finish_reason, s.stop_reason = d.stop_reason;
        }
        if (o.finished) ++finished;
      }
      const auto now = std::chrono::steady_clock::now();
      if (tick && (finished != before || now - last_tick > std::chrono::milliseconds(100))) {
        last_tick = now;
        tick(finished);
      }
    }
  } catch (...) {
    abort_all();
    throw;
  }
  return results;
}

void Runner::update_weights(const std::string& dir) {
  std::lock_guard lock(mu_);
  bool done = false;
  engine_->update_weights(dir, [&] { done = true; });
  // Nothing runs outside generate(), which holds the lock: the swap happened at once.
  BITEXACT_CHECK(done, "weight update did not apply on an idle engine");
}

std::vector<int32_t> Runner::encode(const std::string& text, bool add_special_tokens) const {
  if (!session_.tokenizer)
    fail(ErrorKind::kInvalidArgument,
         "this model has no tokenizer; give {\"prompt_token_ids\": [...]} prompts");
  return session_.tokenizer->encode(text, add_special_tokens);
}

std::string Runner::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  if (!session_.tokenizer) fail(ErrorKind::kInvalidArgument, "this model has no tokenizer");
  return session_.tokenizer->decode(ids, skip_special_tokens);
}

std::string Runner::render_chat(const std::string& body_json) const {
  return server::render_chat(nlohmann::json::parse(body_json), info_);
}

}  // namespace bitexact::python
