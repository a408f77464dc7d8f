// The batch a forward pass runs on, passed explicitly (no global context): one row per token,
// each with its position, its sequence and the KV slot it writes, plus each sequence's block
// table and which rows want logits.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "ops/ops.h"

namespace bitexact::model {

struct ForwardBatch {
  std::vector<int32_t> token_ids;    // [M]
  std::vector<int32_t> positions;    // [M] absolute position in its sequence
  std::vector<int32_t> token_seq;    // [M] row of block_table
  std::vector<int32_t> slots;        // [M] KV slot written: block * block_size + offset
  std::vector<int32_t> block_table;  // [num_seqs * max_blocks]
  int num_seqs = 0;
  int max_blocks = 0;
  std::vector<int32_t> logit_rows;   // rows whose logits are returned, in this order
  // A KV slot no sequence uses, for the padding rows of CUDA-graph decode buckets (-1: none,
  // which disables graphs for this batch).
  int32_t scratch_slot = -1;
  // Per logit row, parallel to logit_rows (empty: every row -1). -1: the row's f32 logits and
  // log-softmax are returned. n >= 0: only its greedy token, that token's logprob and the top n
  // logprobs (a RowTop), found on the model's device: a decode step then copies a few bytes per
  // row instead of the vocabulary twice.
  std::vector<int> row_top_n;
  // Per logit row, parallel to logit_rows (empty: every row greedy). For a row with
  // row_top_n >= 0 and temperature > 0, the token is drawn on the model's device by
  // ops::sample_tokens (top_k, top_p, min_p as the host sampler filters them, then the race of
  // ops/sample_race.h) instead of the argmax. Ignored for rows with row_top_n < 0.
  std::vector<ops::SampleRow> row_sample;

  int num_tokens() const { return int(token_ids.size()); }
  int max_position() const;  // max over positions, +1
};

// What a logit row with row_top_n >= 0 returns: the same values the host sampler would find
// in that row's logits and log-softmax.
struct RowTop {
  int32_t token = -1;    // argmax of the logits, lowest id on ties; or the row_sample draw
  float logprob = 0.0f;  // its log-softmax value
  std::vector<std::pair<int32_t, float>> top;  // top n (token, logprob) by (logprob desc, id asc)
};

// One layer's paged caches, [num_blocks, block_size, Hkv, Dh] each.
struct LayerKv {
  Tensor k, v;
};

}  // namespace bitexact::model
