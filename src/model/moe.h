// The qwen3_moe sparse block over the op interface: router linear, routing, grouped expert
// GEMMs (gate_up, SwiGLU, down) and the slot-ordered combine fused with the residual add and
// RMSNorm after the block, with its activation buffers.
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

// The sparse block of layer L on x[M, H] (x: the post-attention norm), added to residual[M, H],
// then out = rms_norm(residual, norm, eps): the bits of the block's output (moe_combine) followed
// by add_rms_norm, with the combine, the add and the norm in one op
// (ops::moe_combine_add_rms_norm). out may alias x (x is read before the last op only).
void moe_block_add_rms_norm(const ops::ExecContext& ctx, const io::ModelConfig& c,
                            const LayerWeights& L, const Tensor& x, MoeWorkspace& ws,
                            Tensor& residual, const Tensor& norm, float eps, Tensor& out);

}  // namespace bitexact::model
