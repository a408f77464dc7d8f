// Private parts of Model shared by model.cc (eager forward) and model_graph.cc (CUDA graphs):
// the workspace of activation buffers, device batch metadata, and the captured graphs.
#pragma once

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "model/model.h"
#include "model/moe.h"

namespace bitexact::model {

// Activation and metadata buffers sized for the largest batch seen so far (grown, never
// shrunk). The graph runner owns one sized once for its largest bucket, so captured pointers
// stay valid.
struct Model::Workspace {
  int tokens = 0, logit_rows = 0, table_len = 0;
  Buffer resid, resid_alt, hidden, qkv, attn, proj, gate_up, act, last, logits, logprobs;
  Buffer greedy_ids, greedy_vals, top_ids, top_vals;  // ops::top_tokens results per logit row
  Buffer sample_params;  // ops::SampleRow per logit row (ops::sample_tokens)
  Buffer ids, pos, seq, slots, table, rows;
  MoeWorkspace moe;  // qwen3_moe sparse blocks (empty otherwise)

  // Returns true if any buffer moved.
  bool ensure(const io::ModelConfig& c, Device dev, int n_tokens, int n_rows, int n_table) {
    const size_t es = dev == Device::kCpu ? 4 : 2;
    bool moved = false;
    if (n_tokens > tokens) {
      const int64_t qkv_w = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
      resid = Buffer(size_t(n_tokens) * c.hidden_size * es, dev);
      // The residual stream's second buffer for the norm-fused projections (Model::run), which
      // run at ops::kNormLinearMaxRows rows at most.
      resid_alt = Buffer(size_t(std::min(n_tokens, ops::kNormLinearMaxRows)) * c.hidden_size * es, dev);
      hidden = Buffer(size_t(n_tokens) * c.hidden_size * es, dev);
      qkv = Buffer(size_t(n_tokens) * qkv_w * es, dev);
      attn = Buffer(size_t(n_tokens) * c.num_attention_heads * c.head_dim * es, dev);
      proj = Buffer(size_t(n_tokens) * c.hidden_size * es, dev);
      gate_up = Buffer(size_t(n_tokens) * 2 * c.intermediate_size * es, dev);
      act = Buffer(size_t(n_tokens) * c.intermediate_size * es, dev);
      for (Buffer* b : {&ids, &pos, &seq, &slots}) *b = Buffer(size_t(n_tokens) * 4, dev);
      moe.ensure(c, dev, n_tokens);
      tokens = n_tokens;
      moved = true;
    }
    if (n_rows > logit_rows) {
      last = Buffer(size_t(n_rows) * c.hidden_size * es, dev);
      logits = Buffer(size_t(n_rows) * c.vocab_size * es, dev);
      logprobs = Buffer(size_t(n_rows) * c.vocab_size * 4, dev);
      rows = Buffer(size_t(n_rows) * 4, dev);
      greedy_ids = Buffer(size_t(n_rows) * 4, dev);
      greedy_vals = Buffer(size_t(n_rows) * 4, dev);
      top_ids = Buffer(size_t(n_rows) * ops::kMaxTopTokens * 4, dev);
      top_vals = Buffer(size_t(n_rows) * ops::kMaxTopTokens * 4, dev);
      sample_params = Buffer(size_t(n_rows) * sizeof(ops::SampleRow), dev);
      logit_rows = n_rows;
      moved = true;
    }
    if (n_table > table_len) {
      table = Buffer(size_t(n_table) * 4, dev);
      table_len = n_table;
      moved = true;
    }
    return moved;
  }
};

// Batch metadata on the device, as the kernels read it.
struct Model::DeviceBatch {
  Tensor ids, pos, seq, slots, table, rows;  // I32; table is [num_seqs, max_blocks]
  int tokens = 0, logit_rows = 0, max_positions = 0;
};

// Captured decode graphs, keyed by (padded batch size, context bucket).
struct Model::Graphs {
  Workspace ws;
  std::map<std::pair<int, int>, void*> execs;
  const void* kv_data = nullptr;   // the KV cache the graphs were captured against
  uint64_t workspace_epoch = 0;    // ops::cuda::workspace_epoch() when they were captured
  std::vector<int32_t> ids, pos, seq, slots, table;  // host staging of the padded batch
};

}  // namespace bitexact::model
