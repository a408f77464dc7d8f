// Test helper: runs one sequence through a Model with its own paged KV cache (blocks in reverse
// order, so block-table indirection is exercised), prefill or token by token.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "model/model.h"

namespace bitexact::model::test_support {

struct SequenceRunner {
  static constexpr int kBlocks = 256, kBlockSize = 16;
  std::unique_ptr<Model> model;
  std::unique_ptr<kv::KvCache> cache;
  std::vector<LayerKv> layers;

  SequenceRunner(const std::string& path, const ModelOptions& options) {
    model = Model::load(path, options);
    const auto& c = model->config();
    cache = std::make_unique<kv::KvCache>(
        kv::KvCacheShape{int(c.num_hidden_layers), kBlocks, kBlockSize, int(model->kv_cache_heads()), int(c.head_dim)},
        options.device, model->kv_dtype());
    for (int l = 0; l < c.num_hidden_layers; ++l) layers.push_back({cache->k(l), cache->v(l)});
  }
  // Runs tokens at positions [start, start + n) of the sequence; logits of every row.
  std::vector<float> step(const std::vector<int32_t>& tokens, int start) {
    ForwardBatch b;
    b.token_ids = tokens;
    b.num_seqs = 1;
    b.max_blocks = kBlocks;
    for (int i = 0; i < kBlocks; ++i) b.block_table.push_back(kBlocks - 1 - i);
    for (size_t i = 0; i < tokens.size(); ++i) {
      int p = start + int(i);
      b.positions.push_back(p);
      b.token_seq.push_back(0);
      b.slots.push_back(b.block_table[p / kBlockSize] * kBlockSize + p % kBlockSize);
      b.logit_rows.push_back(int(i));
    }
    std::vector<float> logits;
    model->forward(b, layers, logits);
    return logits;
  }
  // Greedy continuation of `prompt` (first maximum on ties), token by token over the cache.
  std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int n) {
    std::vector<int32_t> out;
    std::vector<float> logits = step(prompt, 0);
    int pos = int(prompt.size());
    const int64_t V = model->config().vocab_size;
    for (int i = 0; i < n; ++i) {
      const float* last = logits.data() + logits.size() - V;
      int32_t best = int32_t(std::max_element(last, last + V) - last);
      out.push_back(best);
      logits = step({best}, pos++);
    }
    return out;
  }
};

}  // namespace bitexact::model::test_support
