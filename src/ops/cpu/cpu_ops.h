// The cpu backend of the op interface: the same functions as ops.h, called by dispatch.cc after
// the shapes were checked. See ops.h for each op's contract.
#pragma once

#include <vector>

#include "ops/ops.h"

namespace bitexact::ops::cpu {

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y);
void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add_rms_norm(const ExecContext& ctx, Tensor& residual, const Tensor& x, const Tensor& weight,
                  float eps, Tensor& out);
void rope(const ExecContext& ctx, Tensor& x, const Tensor& positions, const Tensor& cos_sin,
          bool interleaved);
void silu_mul(const ExecContext& ctx, const Tensor& gate_up, Tensor& out);
void embedding(const ExecContext& ctx, const Tensor& table, const Tensor& ids, Tensor& out);
void gather_rows(const ExecContext& ctx, const Tensor& x, const Tensor& rows, Tensor& out);
void kv_cache_write(const ExecContext& ctx, const Tensor& k, const Tensor& v, const Tensor& slots,
                    Tensor& k_cache, Tensor& v_cache);
void qk_norm_rope_kv_write(const ExecContext& ctx, Tensor& q, Tensor& k, const Tensor& v,
                           const Tensor* q_norm, const Tensor* k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                           const Tensor& slots, Tensor& k_cache, Tensor& v_cache);
void attention(const ExecContext& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const AttentionMeta& meta, float scale, Tensor& out);
void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out);
void sum_partials(const ExecContext& ctx, const Tensor& partials, Tensor& out);
void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals);
void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals);
// logits [R, V] as f32 rows: itself when f32, else bf16 widened into `storage` (the CPU backend's
// activations are f32; the logits of a CUDA-shaped caller may be bf16).
Tensor f32_rows(const Tensor& logits, std::vector<float>& storage);
void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int max_top_k);
void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing);
void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w,
                const MoeRouting& routing, Tensor& y);
void moe_linear_swiglu(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w,
                       const MoeRouting& routing, Tensor& h, Tensor& y);
void moe_combine(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing, Tensor& out);
void moe_combine_add_rms_norm(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing,
                              Tensor& residual, const Tensor& weight, float eps, Tensor& out);
void fill_uniform(const ExecContext& ctx, Tensor& t, uint64_t seed, float scale, float offset);
void copy(const ExecContext& ctx, const Tensor& src, Tensor& dst);
void synchronize(const ExecContext& ctx);

}  // namespace bitexact::ops::cpu
