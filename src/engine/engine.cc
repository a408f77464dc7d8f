// Engine: requests and samples around the Scheduler, and the step loop
// schedule -> forward -> sample -> postprocess. Sampling is keyed by (sample seed, token index)
// and every row's logits are batch-invariant, so a sample's tokens and logprobs do not depend on
// when it arrived, how it was chunked, cached, preempted, or what ran beside it.
#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <unordered_map>

#include "core/error.h"
#include "core/philox.h"
#include "engine/batch_generator.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/text_stream.h"
#include "kv/kv_cache.h"
#include "ops/sample_filter.h"
#include "model/weight_update.h"

namespace bitexact::engine {

uint64_t sample_seed(uint64_t seed, int index) {
  if (index == 0) return seed;  // n = 1 behaves exactly like a request with this seed
  auto r = philox4x32_10({uint32_t(index), 0, 0x5eed5u, 0}, {uint32_t(seed), uint32_t(seed >> 32)});
  return (uint64_t(r[0]) << 32 | r[1]) & ((uint64_t(1) << 53) - 1);  // exact in JSON doubles
}

namespace {

struct Request;

struct Sample {
  Request* req = nullptr;
  int index = 0;
  uint64_t seed = 0;
  Seq seq;
  std::unique_ptr<TextStream> text;
  int generated = 0;
  bool finished = false;
  SampleDelta pending;  // this step's delta
  bool touched = false;
};

struct Request {
  RequestSpec spec;
  std::vector<std::unique_ptr<Sample>> samples;
  std::optional<std::vector<TokenLogprob>> prompt_lps;  // filled by sample 0
  bool prompt_lps_sent = false;
  bool touched = false;  // has output this step
  int unfinished = 0;
};

}  // namespace

struct Engine::Impl {
  model::Model& model;
  const tok::Tokenizer* tokenizer;
  EngineConfig config;
  std::unique_ptr<kv::KvCache> cache;
  std::vector<model::LayerKv> layers;
  std::unique_ptr<kv::BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;
  std::unordered_map<std::string, std::unique_ptr<Request>> requests;
  std::vector<RequestOutput> aborted;  // returned by the next step()
  Sampler sampler;
  std::vector<float> logits, logprobs;  // [rows * V] each; log-softmax computed by the model
  std::vector<model::RowTop> tops;      // rows sampled on the model's device
  int steps_taken = 0;                  // for EngineConfig::fail_at_step
  int32_t scratch_slot = -1;            // a KV slot no request uses (CUDA-graph padding rows)
  uint64_t next_order = 0;
  EngineStats st;
  // A staged weight update (update_weights), applied once every request added before it ended;
  // requests added meanwhile wait in `held`, outside the scheduler.
  std::optional<model::ModelWeights> new_weights;
  std::function<void()> on_weights_updated;
  std::vector<Request*> held;
  void apply_update_if_drained();

  Impl(model::Model& m, const tok::Tokenizer* t, const EngineConfig& c) : model(m), tokenizer(t), config(c) {}
  void validate(const RequestSpec& spec) const;
  std::vector<int32_t> banned(const Sample& s) const;
  // -1 if the host sampler needs s's full logits row; else the top-n the device path returns.
  int device_top_n(const Sample& s) const;
  ops::SampleRow device_sample(const Sample& s) const;
  SampleResult draw(Sample& s, const float* row, const float* row_logprobs);
  void postprocess(Sample& s, SampleResult r);
  void finish(Sample& s, const std::string& reason, std::optional<std::string> stop_reason);
};

Engine::Engine(model::Model& model, const tok::Tokenizer* tokenizer, const EngineConfig& config)
    : impl_(std::make_unique<Impl>(model, tokenizer, config)) {
  Impl& e = *impl_;
  EngineConfig& c = e.config;
  const io::ModelConfig& mc = model.config();
  if (c.block_size < 1) fail(ErrorKind::kInvalidArgument, "block_size must be positive");
  if (c.max_num_seqs < 1) fail(ErrorKind::kInvalidArgument, "max_num_seqs must be at least 1");
  if (c.max_num_batched_tokens < 1) fail(ErrorKind::kInvalidArgument, "max_num_batched_tokens must be at least 1");
  if (c.max_model_len <= 0 || c.max_model_len > model.max_positions()) {
    if (c.max_model_len > model.max_positions())
      fail(ErrorKind::kInvalidArgument, "max_model_len " + std::to_string(c.max_model_len) +
                                            " exceeds the model's maximum of " + std::to_string(model.max_positions()));
    c.max_model_len = model.max_positions();
  }
  if (c.num_kv_blocks <= 0) {
    const size_t per_block = size_t(mc.num_hidden_layers) * 2 * size_t(c.block_size) * size_t(model.kv_cache_heads()) *
                             size_t(mc.head_dim) * dtype_size(model.kv_dtype());
    c.num_kv_blocks = int(c.kv_cache_bytes / per_block);
    if (c.num_kv_blocks < 2) fail(ErrorKind::kInvalidArgument, "the KV cache budget holds fewer than two blocks");
  }
  e.cache = std::make_unique<kv::KvCache>(
      kv::KvCacheShape{int(mc.num_hidden_layers), c.num_kv_blocks, c.block_size, int(model.kv_cache_heads()),
                       int(mc.head_dim)},
      model.context().device, model.kv_dtype());
  for (int l = 0; l < int(mc.num_hidden_layers); ++l) e.layers.push_back({e.cache->k(l), e.cache->v(l)});
  // The cache's own allocator stays untouched: the block manager hands out the same ids.
  e.blocks = std::make_unique<kv::BlockManager>(c.num_kv_blocks, c.block_size, c.enable_prefix_caching);
  // Block 0 is never handed to a request: padding rows of CUDA-graph decode batches write there.
  e.scratch_slot = e.blocks->allocate() * c.block_size;
  e.scheduler = std::make_unique<Scheduler>(SchedulerConfig{c.max_num_seqs, c.max_num_batched_tokens}, *e.blocks);
}

Engine::~Engine() = default;

const EngineConfig& Engine::config() const { return impl_->config; }

void Engine::Impl::validate(const RequestSpec& r) const {
  auto bad = [&](const std::string& m) { fail(ErrorKind::kInvalidArgument, m); };
  if (requests.count(r.id)) bad("request id `" + r.id + "` is already in use");
  if (r.prompt.empty()) bad("prompt is empty");
  r.params.validate();
  if (r.n < 1 || r.n > 256) bad("n must be between 1 and 256");
  if (r.prompt_logprobs < -1 || r.prompt_logprobs > 20) bad("prompt_logprobs must be between 0 and 20");
  if (!r.stop.empty() && !tokenizer) bad("stop strings need a tokenizer, and this model has none");
  for (const auto& s : r.stop)
    if (s.empty()) bad("stop strings must not be empty");
  const int64_t V = model.config().vocab_size;
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V)
      bad("prompt token id " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  const int P = int(r.prompt.size());
  if (P >= config.max_model_len)
    bad("prompt has " + std::to_string(P) + " tokens; max_model_len is " + std::to_string(config.max_model_len) +
        " (prompt + at least one generated token must fit)");
  const int64_t len = std::min<int64_t>(int64_t(P) + r.params.max_tokens, config.max_model_len);
  const int64_t need = (len + config.block_size - 1) / config.block_size;
  if (need > config.num_kv_blocks - 1)  // one block is the scratch block
    bad("prompt + max_tokens needs " + std::to_string(need) + " KV blocks; the cache has " +
        std::to_string(config.num_kv_blocks - 1));
}

void Engine::add_request(RequestSpec spec) {
  Impl& e = *impl_;
  e.validate(spec);
  auto req = std::make_unique<Request>();
  req->spec = std::move(spec);
  const RequestSpec& r = req->spec;
  const uint64_t base = resolve_seed(r.params);
  if (r.prompt_logprobs >= 0) req->prompt_lps.emplace();
  for (int i = 0; i < r.n; ++i) {
    auto s = std::make_unique<Sample>();
    s->req = req.get();
    s->index = i;
    s->seed = sample_seed(base, i);
    s->seq.order = e.next_order++;
    s->seq.tokens = r.prompt;
    s->seq.num_prompt = int(r.prompt.size());
    // Prompt logprobs need the logits of every prompt row, which cached blocks do not give.
    s->seq.cache_lookup = !(i == 0 && r.prompt_logprobs >= 0);
    s->seq.owner = s.get();
    s->text = std::make_unique<TextStream>(e.tokenizer, r.skip_special_tokens, r.stop);
    s->pending.index = i;
    s->pending.seed = s->seed;
    req->samples.push_back(std::move(s));
  }
  req->unfinished = r.n;
  if (e.new_weights)
    e.held.push_back(req.get());  // runs on the new weights, after the swap
  else
    for (auto& s : req->samples) e.scheduler->add(&s->seq);
  e.st.prompt_tokens += r.prompt.size() * size_t(r.n);
  e.requests.emplace(r.id, std::move(req));
}

void Engine::abort(const std::string& id) {
  Impl& e = *impl_;
  auto it = e.requests.find(id);
  if (it == e.requests.end()) return;
  RequestOutput out;
  out.id = id;
  out.num_prompt_tokens = int(it->second->spec.prompt.size());
  out.finished = true;
  for (auto& s : it->second->samples) {
    if (s->finished) continue;
    e.scheduler->remove(&s->seq);
    SampleDelta d;
    d.index = s->index;
    d.seed = s->seed;
    d.finished = true;
    d.finish_reason = "abort";
    out.samples.push_back(std::move(d));
  }
  std::erase(e.held, it->second.get());
  e.requests.erase(it);
  e.aborted.push_back(std::move(out));
  e.apply_update_if_drained();
}

void Engine::Impl::finish(Sample& s, const std::string& reason, std::optional<std::string> stop_reason) {
  s.finished = true;
  s.pending.finished = true;
  s.pending.finish_reason = reason;
  s.pending.stop_reason = std::move(stop_reason);
  scheduler->remove(&s.seq);
  --s.req->unfinished;
}

// Tokens that may not be sampled now: EOS and stop ids before min_tokens.
std::vector<int32_t> Engine::Impl::banned(const Sample& s) const {
  const SamplingParams& p = s.req->spec.params;
  std::vector<int32_t> out;
  if (s.generated < p.min_tokens) {
    out = p.stop_token_ids;
    if (!p.ignore_eos) out.insert(out.end(), config.eos_ids.begin(), config.eos_ids.end());
  }
  return out;
}

// A greedy row with nothing banned and no penalty is the argmax of the raw logits, so the
// model's device can pick it (model::RowTop) with the same result as Sampler::sample. So can any
// temperature row with nothing banned and no penalty, whatever its top_k / top_p / min_p: the
// device draws it with ops::sample_tokens (device_sample), whose filters are Sampler::sample's
// (ops/sample_filter.h: integer weights, so the device's radix select keeps the same tokens as
// the host's sorted walk) and whose draw is the same race. Only penalties and banned tokens
// (min_tokens) bring the full row to the host.
int Engine::Impl::device_top_n(const Sample& s) const {
  const SamplingParams& p = s.req->spec.params;
  if (!config.device_greedy || p.has_penalties() || !banned(s).empty()) return -1;
  return std::max(p.logprobs, 0);
}

// The device draw of a row device_top_n accepted: Sampler::sample's parameters for it.
ops::SampleRow Engine::Impl::device_sample(const Sample& s) const {
  const SamplingParams& p = s.req->spec.params;
  if (p.greedy()) return {};
  const int64_t V = model.config().vocab_size;
  return {float(p.temperature), p.top_k > 0 && p.top_k < V ? p.top_k : 0, s.seed, uint64_t(s.generated),
          ops::filter::top_p_units(p.top_p), ops::filter::min_p_units(p.min_p)};
}

SampleResult Engine::Impl::draw(Sample& s, const float* row, const float* row_logprobs) {
  const SamplingParams& p = s.req->spec.params;
  const int64_t V = model.config().vocab_size;
  const std::span<const int32_t> all(s.seq.tokens);
  const TokenHistory history{all.first(size_t(s.seq.num_prompt)), all.subspan(size_t(s.seq.num_prompt))};
  return sampler.sample(std::span<const float>(row, size_t(V)), p, s.seed, uint64_t(s.generated), banned(s),
                        row_logprobs, history);
}

// Appends the sampled token to `s` and applies the stop conditions.
void Engine::Impl::postprocess(Sample& s, SampleResult r) {
  const SamplingParams& p = s.req->spec.params;
  s.seq.tokens.push_back(r.token);
  ++s.generated;
  ++st.generation_tokens;
  s.touched = true;
  s.pending.token_ids.push_back(r.token);
  if (p.logprobs >= 0) s.pending.logprobs.push_back({r.token, r.logprob, std::move(r.top)});
  const bool past_min = s.generated > p.min_tokens;
  const bool eos = !p.ignore_eos && std::count(config.eos_ids.begin(), config.eos_ids.end(), r.token);
  const bool stop_id = std::count(p.stop_token_ids.begin(), p.stop_token_ids.end(), r.token) > 0;
  if (eos || stop_id) {
    // The stopping token's text is not part of the output (vLLM's default).
    s.text->finish(false);
    finish(s, "stop", stop_id && !eos ? std::optional<std::string>(std::to_string(r.token)) : std::nullopt);
    return;
  }
  if (auto hit = s.text->push(r.token, past_min)) return finish(s, "stop", hit);
  if (s.generated >= p.max_tokens || int(s.seq.tokens.size()) >= config.max_model_len) {
    if (auto hit = s.text->finish(past_min)) return finish(s, "stop", hit);
    finish(s, "length", std::nullopt);
  }
}

std::vector<RequestOutput> Engine::step() {
  Impl& e = *impl_;
  if (e.config.fail_at_step > 0 && ++e.steps_taken >= e.config.fail_at_step)
    fail(ErrorKind::kInternal, "injected engine fault (EngineConfig::fail_at_step)");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RequestOutput> outs = std::move(e.aborted);
  e.aborted.clear();
  SchedulerOutput plan = e.scheduler->schedule();
  e.st.schedule_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (plan.chunks.empty()) {
    if (e.scheduler->num_waiting() > 0 || e.scheduler->num_running() > 0)
      fail(ErrorKind::kInternal, "scheduler made no progress with work queued");
    return outs;
  }
  // The forward batch: one block-table row per scheduled sequence, logits for the rows that
  // sample and, for requests that asked, the prompt rows (a prompt logprob is the logprob of
  // token j+1 under the logits of row j).
  model::ForwardBatch b;
  b.scratch_slot = e.scratch_slot;
  b.num_seqs = int(plan.chunks.size());
  for (const auto& c : plan.chunks) b.max_blocks = std::max(b.max_blocks, int(c.seq->blocks.size()));
  b.block_table.assign(size_t(b.num_seqs) * size_t(b.max_blocks), 0);
  struct RowUse {
    Sample* sample;
    int prompt_pos;  // >= 0: prompt logprob of token prompt_pos + 1; -1: sampling row
  };
  std::vector<RowUse> uses;
  const int bs = e.config.block_size;
  for (int i = 0; i < b.num_seqs; ++i) {
    const ScheduledChunk& c = plan.chunks[size_t(i)];
    Seq& q = *c.seq;
    Sample* s = static_cast<Sample*>(q.owner);
    std::copy(q.blocks.begin(), q.blocks.end(), b.block_table.begin() + long(i) * b.max_blocks);
    const bool want_prompt = s->index == 0 && s->req->prompt_lps && !s->req->prompt_lps_sent;
    for (int p = c.start; p < c.start + c.count; ++p) {
      b.token_ids.push_back(q.tokens[size_t(p)]);
      b.positions.push_back(p);
      b.token_seq.push_back(i);
      b.slots.push_back(q.blocks[size_t(p / bs)] * bs + p % bs);
      if (want_prompt && p + 1 < q.num_prompt) {
        b.logit_rows.push_back(b.num_tokens() - 1);
        uses.push_back({s, p});
      }
    }
    if (c.start + c.count == int(q.tokens.size())) {
      b.logit_rows.push_back(b.num_tokens() - 1);
      uses.push_back({s, -1});
    }
  }
  for (const RowUse& u : uses) {
    b.row_top_n.push_back(u.prompt_pos >= 0 ? -1 : e.device_top_n(*u.sample));
    const bool device = b.row_top_n.back() >= 0;
    b.row_sample.push_back(device ? e.device_sample(*u.sample) : ops::SampleRow{});
  }
  const auto f0 = std::chrono::steady_clock::now();
  e.model.forward(b, e.layers, e.logits, &e.logprobs, &e.tops);
  const auto f1 = std::chrono::steady_clock::now();
  e.scheduler->on_computed(plan);

  const int64_t V = e.model.config().vocab_size;
  std::vector<Request*> touched;
  const auto s0 = std::chrono::steady_clock::now();
  for (size_t r = 0; r < uses.size(); ++r) {
    Sample& s = *uses[r].sample;
    const float* row = e.logits.data() + r * size_t(V);
    if (uses[r].prompt_pos >= 0) {
      auto& lps = *s.req->prompt_lps;
      lps.resize(size_t(s.seq.num_prompt));
      const int j = uses[r].prompt_pos + 1;
      lps[size_t(j)] = token_logprob(std::span<const float>(row, size_t(V)), s.seq.tokens[size_t(j)],
                                     s.req->spec.prompt_logprobs, e.logprobs.data() + r * size_t(V));
      continue;
    }
    if (b.row_top_n[r] >= 0) {
      const model::RowTop& t = e.tops[r];
      e.postprocess(s, SampleResult{t.token, t.logprob, t.top});
    } else {
      e.postprocess(s, e.draw(s, row, e.logprobs.data() + r * size_t(V)));
    }
    if (!s.req->touched) s.req->touched = true, touched.push_back(s.req);
  }
  e.st.sample_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
  for (Request* req : touched) {
    req->touched = false;
    RequestOutput out;
    out.id = req->spec.id;
    out.num_prompt_tokens = int(req->spec.prompt.size());
    if (req->prompt_lps && !req->prompt_lps_sent && req->samples[0]->generated > 0) {
      req->prompt_lps->resize(size_t(out.num_prompt_tokens));
      out.prompt_logprobs = std::move(*req->prompt_lps);
      req->prompt_lps_sent = true;
      req->samples[0]->seq.cache_lookup = true;  // a recompute after preemption may use the cache
    }
    for (auto& s : req->samples) {
      if (!s->touched) continue;
      s->pending.text = s->text->take(s->finished);
      out.samples.push_back(std::move(s->pending));
      s->pending = SampleDelta{};
      s->pending.index = s->index;
      s->pending.seed = s->seed;
      s->touched = false;
    }
    out.finished = req->unfinished == 0;
    const std::string id = req->spec.id;
    outs.push_back(std::move(out));
    if (outs.back().finished) e.requests.erase(id);
  }
  ++e.st.steps;
  e.st.forward_seconds += std::chrono::duration<double>(f1 - f0).count();
  e.st.step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  e.apply_update_if_drained();
  return outs;
}

bool Engine::has_unfinished() const { return !impl_->requests.empty() || !impl_->aborted.empty(); }

EngineStats Engine::stats() const {
  const Impl& e = *impl_;
  EngineStats s = e.st;
  s.running = e.scheduler->num_running();
  s.waiting = e.scheduler->num_waiting();
  for (const Request* r : e.held) s.waiting += int(r->samples.size());
  s.kv_blocks_total = e.blocks->num_blocks() - 1;  // without the scratch block
  s.kv_blocks_free = e.blocks->num_available();
  s.preemptions = e.scheduler->num_preemptions();
  s.prefix_cache_hits = e.blocks->hits();
  return s;
}

void Engine::update_weights(const std::string& dir, std::function<void()> on_done) {
  Impl& e = *impl_;
  if (e.new_weights)
    fail(ErrorKind::kInvalidArgument, "a weight update is already waiting for running requests");
  // Read and checked in full before anything changes: a bad checkpoint leaves the engine as it was.
  model::ModelWeights w =
      model::load_weight_update(dir, e.model.config(), e.model.context().device);
  e.model.check_replacement(w);
  e.new_weights = std::move(w);
  e.on_weights_updated = std::move(on_done);
  e.apply_update_if_drained();
}

bool Engine::weight_update_pending() const { return impl_->new_weights.has_value(); }

void Engine::Impl::apply_update_if_drained() {
  if (!new_weights || requests.size() > held.size()) return;  // older requests still run
  model.replace_weights(std::move(*new_weights));
  new_weights.reset();
  // Cached blocks hold KV computed with the old weights; nothing holds a block now.
  blocks->clear_cache();
  for (Request* r : held)
    for (auto& s : r->samples) scheduler->add(&s->seq);
  held.clear();
  if (auto done = std::move(on_weights_updated)) done();
}

}  // namespace bitexact::engine
