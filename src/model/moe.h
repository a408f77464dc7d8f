// The qwen3_moe sparse block over the op interface: router linear, routing, grouped expert
// GEMMs (gate_up, SwiGLU, down) and the slot-ordered combine, with its activation buffers.
// Every step is row-invariant (ops.h, MoE section), so a token's block output is a function of
// its own hidden state and the weights, whatever the other tokens of the batch chose.
#pragma once

#include "core/tensor.h"
#include "io/model_config.h"
#include "model/weights.h"
#include "ops/ops.h"

namespace bitexact::model {

// Buffers of the sparse block for up to `tokens` tokens (grown, never shrunk; empty for models
// without experts). Part of Model::Workspace, so CUDA graphs capture fixed addresses.
struct MoeWorkspace {
  int tokens = 0;
  Buffer router;   // [M, E] router logits (activation dtype)
  Buffer ids;      // I32 [M, k]
  Buffer weights;  // F32 [M, k]
  Buffer groups;   // I32 [moe_groups_len(M * k, E)]
  Buffer gate_up;  // [M * k, 2 I_moe]
  Buffer act;      // [M * k, I_moe]
  Buffer out;      // [M * k, H]: each (token, slot)'s expert output before the combine
  // Returns true if any buffer moved.
  bool ensure(const io::ModelConfig& c, Device dev, int n_tokens);
};

// out[M, H] = the sparse block of layer L applied to x[M, H] (x: the post-attention norm).
void moe_block(const ops::ExecContext& ctx, const io::ModelConfig& c, const LayerWeights& L,
               const Tensor& x, MoeWorkspace& ws, Tensor& out);

}  // namespace bitexact::model
