// The qwen3_moe sparse block (see moe.h). Matches transformers' Qwen3MoeSparseMoeBlock: softmax
// over the router logits in f32, top-k, optional renormalisation, SwiGLU experts, and the
// weighted sum of the k expert outputs (here in slot order with one f32 accumulator), fused with
// the residual add and RMSNorm that follow the block in the decoder layer.
#include "model/moe.h"

namespace bitexact::model {

bool MoeWorkspace::ensure(const io::ModelConfig& c, Device dev, int n_tokens) {
  if (c.num_experts <= 0 || n_tokens <= tokens) return false;
  const size_t es = dev == Device::kCpu ? 4 : 2;
  const size_t M = size_t(n_tokens), E = size_t(c.num_experts), k = size_t(c.num_experts_per_tok);
  const size_t I = size_t(c.moe_intermediate_size), H = size_t(c.hidden_size);
  router = Buffer(M * E * es, dev);
  ids = Buffer(M * k * 4, dev);
  weights = Buffer(M * k * 4, dev);
  groups = Buffer(size_t(ops::moe_groups_len(int64_t(M * k), int64_t(E))) * 4, dev);
  gate_up = Buffer(M * k * 2 * I * es, dev);
  act = Buffer(M * k * I * es, dev);
  out = Buffer(M * k * H * es, dev);
  tokens = n_tokens;
  return true;
}

void moe_block_add_rms_norm(const ops::ExecContext& ctx, const io::ModelConfig& c,
                            const LayerWeights& L, const Tensor& x, MoeWorkspace& ws,
                            Tensor& residual, const Tensor& norm, float eps, Tensor& out) {
  const int64_t M = x.dim(0), E = c.num_experts, k = c.num_experts_per_tok;
  const int64_t I = c.moe_intermediate_size, H = c.hidden_size;
  const DType act = x.dtype;
  Tensor logits = ws.router.as(act, {M, E});
  ops::linear(ctx, x, L.router, logits);
  ops::MoeRouting r;
  r.expert_ids = ws.ids.as(DType::kI32, {M, k});
  r.weights = ws.weights.as(DType::kF32, {M, k});
  r.groups = ws.groups.as(DType::kI32, {ops::moe_groups_len(M * k, E)});
  r.num_experts = E;
  ops::moe_route(ctx, logits, c.norm_topk_prob, r);
  Tensor gate_up = ws.gate_up.as(act, {M * k, 2 * I}), h = ws.act.as(act, {M * k, I});
  Tensor y = ws.out.as(act, {M * k, H});
  ops::moe_linear(ctx, x, L.experts_gate_up, r, gate_up);  // every slot reads its token's row
  ops::moe_linear_swiglu(ctx, gate_up, L.experts_down, r, h, y);
  // Last: out may alias x.
  ops::moe_combine_add_rms_norm(ctx, y, r, residual, norm, eps, out);
}

}  // namespace bitexact::model
