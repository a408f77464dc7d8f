// BatchGenerator: prefill everything, then lock-step decode. Each request owns the KV blocks for
// its whole length, so nothing is evicted; a request's rows never see another request's data.
#include "engine/batch_generator.h"

#include <algorithm>
#include <random>

#include "engine/sampler.h"

namespace bitexact::engine {

uint64_t resolve_seed(const SamplingParams& params) {
  if (params.seed) return *params.seed;
  std::random_device rd;
  return (uint64_t(rd()) << 32 | rd()) & ((uint64_t(1) << 53) - 1);  // exact in JSON doubles
}

BatchGenerator::BatchGenerator(model::Model& model, int kv_blocks, int block_size,
                               std::vector<int32_t> eos_ids)
    : model_(model),
      cache_(kv::KvCacheShape{int(model.config().num_hidden_layers), kv_blocks, block_size,
                              int(model.kv_cache_heads()), int(model.config().head_dim)},
             model.context().device, model.kv_dtype()),
      eos_ids_(std::move(eos_ids)) {
  for (int l = 0; l < cache_.shape().num_layers; ++l) layers_.push_back({cache_.k(l), cache_.v(l)});
  // One block no request uses: the padding rows of CUDA-graph decode buckets write there.
  scratch_slot_ = cache_.allocator().allocate() * block_size;
}

std::vector<GenerateOutput> BatchGenerator::generate(const std::vector<GenerateRequest>& requests) {
  const int n = int(requests.size());
  const int bs = cache_.shape().block_size;
  const int64_t V = model_.config().vocab_size;
  std::vector<GenerateOutput> out(static_cast<size_t>(n));
  if (n == 0) return out;
  int max_blocks = 0, need = 0;
  for (const auto& r : requests) {
    r.params.validate();
    if (r.prompt.empty()) fail(ErrorKind::kInvalidArgument, "prompt is empty");
    int len = int(r.prompt.size()) + r.params.max_tokens;
    if (len > model_.max_positions())
      fail(ErrorKind::kInvalidArgument, "prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_tokens (" +
                                            std::to_string(r.params.max_tokens) + ") exceeds the maximum model length " +
                                            std::to_string(model_.max_positions()));
    int blocks = (len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, blocks);
    need += blocks;
  }
  if (!cache_.allocator().can_allocate(need))
    fail(ErrorKind::kOutOfResources, "batch needs " + std::to_string(need) + " KV blocks, the cache has " +
                                         std::to_string(cache_.allocator().num_free()));
  std::vector<int32_t> table(size_t(n) * size_t(max_blocks), 0);
  for (int i = 0; i < n; ++i) {
    int len = int(requests[i].prompt.size()) + requests[i].params.max_tokens;
    for (int b = 0; b < (len + bs - 1) / bs; ++b) table[size_t(i) * max_blocks + b] = cache_.allocator().allocate();
    out[i].seed = resolve_seed(requests[i].params);
  }

  Sampler sampler;
  std::vector<int> length(static_cast<size_t>(n));  // tokens in the KV cache
  std::vector<bool> done(static_cast<size_t>(n), false);
  std::vector<int32_t> next(static_cast<size_t>(n));
  std::vector<float> logits, logprobs;
  bool first = true;
  for (;;) {
    model::ForwardBatch b;
    b.block_table = table;
    b.num_seqs = n;
    b.max_blocks = max_blocks;
    b.scratch_slot = scratch_slot_;
    std::vector<int> row_req;
    for (int i = 0; i < n; ++i) {
      if (done[i]) continue;
      const std::vector<int32_t> toks = first ? requests[i].prompt : std::vector<int32_t>{next[i]};
      for (int32_t t : toks) {
        int p = length[i]++;
        b.token_ids.push_back(t);
        b.positions.push_back(p);
        b.token_seq.push_back(i);
        b.slots.push_back(table[size_t(i) * max_blocks + p / bs] * bs + p % bs);
      }
      b.logit_rows.push_back(b.num_tokens() - 1);
      row_req.push_back(i);
    }
    if (row_req.empty()) break;
    first = false;
    model_.forward(b, layers_, logits, &logprobs);
    for (size_t r = 0; r < row_req.size(); ++r) {
      const int i = row_req[r];
      const SamplingParams& p = requests[i].params;
      GenerateOutput& o = out[i];
      std::vector<int32_t> banned;
      if (int(o.token_ids.size()) < p.min_tokens) {
        banned = p.stop_token_ids;
        if (!p.ignore_eos) banned.insert(banned.end(), eos_ids_.begin(), eos_ids_.end());
      }
      SampleResult s = sampler.sample(std::span<const float>(logits.data() + r * V, size_t(V)), p, o.seed,
                                      o.token_ids.size(), banned,
                                      logprobs.data() + r * V);
      o.token_ids.push_back(s.token);
      o.logprobs.push_back(s.logprob);
      if (p.logprobs > 0) o.top_logprobs.push_back({s.top});
      next[i] = s.token;
      bool is_eos = !p.ignore_eos && std::count(eos_ids_.begin(), eos_ids_.end(), s.token);
      bool is_stop = std::count(p.stop_token_ids.begin(), p.stop_token_ids.end(), s.token) > 0;
      if (is_eos || is_stop) done[i] = true, o.finish_reason = "stop";
      else if (int(o.token_ids.size()) >= p.max_tokens) done[i] = true, o.finish_reason = "length";
    }
  }
  for (int i = 0; i < n; ++i) {
    int len = int(requests[i].prompt.size()) + requests[i].params.max_tokens;
    for (int b = 0; b < (len + bs - 1) / bs; ++b) cache_.allocator().release(table[size_t(i) * max_blocks + b]);
  }
  return out;
}

}  // namespace bitexact::engine
