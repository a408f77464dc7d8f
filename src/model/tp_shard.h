// Tensor-parallel sharding: which slices of the model rank r of `size` holds (TpLayout), and
// the copy of those slices out of the full weights (shard_weights). Column-parallel layers
// (q/k/v, gate/up, experts' gate/up, embedding and LM head rows) keep whole output rows; the
// row-parallel layers (o_proj, down_proj, experts' down) are cut along K into `parts` fixed
// parts, kTpParts of them whatever the TP degree, so every degree computes the same partials
// (docs/notes/tensor_parallel.md).
#pragma once

#include <cstdint>
#include <vector>

#include "model/weights.h"

namespace bitexact::model {

// The fixed K-split of row-parallel layers: TP degrees 1, 2, 4 and 8 all fold 8 partials.
constexpr int kTpParts = 8;

// Part p of a K-long dimension is [tp_part_edge(K, p, P), tp_part_edge(K, p + 1, P)).
inline int64_t tp_part_edge(int64_t K, int p, int P) { return K * p / P; }

struct TpLayout {
  int rank = 0, size = 1;
  int parts = kTpParts;  // P: kTpParts (TP-invariant) or size (one partial per rank)
  // Attention: the query heads [q_begin, q_end) covering this rank's o_proj K range, widened to
  // whole GQA groups, and their KV heads [kv_begin, kv_end). Heads two ranks share are computed
  // by both (replicated, identical bits). o_offset: column of the rank's first o_proj K element
  // inside its local attention output [M, (q_end - q_begin) * Dh].
  int64_t q_begin = 0, q_end = 0, kv_begin = 0, kv_end = 0, o_offset = 0;
  // MLP: intermediate columns [i_begin, i_end) (dense), [e_begin, e_end) (each expert): the
  // union of this rank's down_proj K parts.
  int64_t i_begin = 0, i_end = 0, e_begin = 0, e_end = 0;
  // Vocabulary rows [v_begin, v_end) of embed and lm_head; every rank's shard is padded with
  // zero rows to vocab_rows so that gathers move equal-sized blocks.
  int64_t v_begin = 0, v_end = 0, vocab_rows = 0;

  int part_begin() const { return rank * parts / size; }
  int part_count() const { return parts / size; }
};

// Rank `rank`'s layout. Throws Error(kInvalidArgument) for a degree that does not divide `parts`
// or a model too small to cut into `parts` K parts.
TpLayout make_tp_layout(const io::ModelConfig& c, int rank, int size, int parts);

// A rank's weights. `weights.config` has the rank's head counts and intermediate sizes (its
// vocab_size stays the full vocabulary: logits are gathered to full width). wo, w_down and
// experts_down are empty; their K parts are in the part lists, each contiguous.
struct TpRankWeights {
  ModelWeights weights;                         // embed, lm_head: [vocab_rows, H] shards
  std::vector<std::vector<Tensor>> wo_parts;    // [layer][local part]: [H, part of Hq*Dh]
  std::vector<std::vector<Tensor>> down_parts;  // [layer][local part]: [H, part of I] or
                                                // experts [E, H, part of I_moe]
  TpLayout layout;
};

// Copies the rank's slices out of `full` (host tensors, as load_weights(.., kCpu) gives) into
// buffers on `device` (CPU: the checkpoint's dtype; CUDA: bf16, as the loader places weights).
TpRankWeights shard_weights(const ModelWeights& full, const TpLayout& layout, Device device);

}  // namespace bitexact::model
