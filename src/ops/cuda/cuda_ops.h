// The cuda backend of the op interface: the same functions as ops.h, called by dispatch.cc after
// the shapes were checked. See ops.h for each op's contract.
#pragma once

#include "ops/ops.h"

namespace bitexact::ops::cuda {

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y, int64_t plan_rows = 0);
void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor& out);
bool norm_linear_fuses(const ExecContext& ctx, int64_t M, int64_t K);
void norm_linear(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                 const Tensor& norm_weight, float eps, Tensor* residual_out, const Tensor& w, Tensor& y);
bool swiglu_linear_fuses(const ExecContext& ctx, int64_t M, int64_t N, int64_t K);
void swiglu_linear(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y);
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
// top_tokens with the row cut into `slices` column slices of one CTA each (0: by the row length;
// 1: one CTA per row). Speed only, for tests and benches: every slicing gives the same result.
void top_tokens_sliced(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals,
                       int slices);
void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals);
void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int max_top_k);
// The log-sum-exp per row that log_softmax subtracts (the same bits), on the device: a pointer
// into per-device scratch, valid until the next log_softmax / top_logprobs / row_lse on it.
const float* row_lse(const ExecContext& ctx, const Tensor& logits);
// top_tokens of x[r, :] - minus[r] (device pointer, f32 subtraction): top_logprobs' second half.
void top_tokens_minus(const ExecContext& ctx, const Tensor& x, const float* minus, Tensor& ids,
                      Tensor& vals);
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

}  // namespace bitexact::ops::cuda

namespace bitexact::ops::cuda {
// Registers cudaMalloc/cudaFree as core's device allocator and picks the device; idempotent.
void init_cuda_backend(int device_index = 0);
}  // namespace bitexact::ops::cuda

namespace bitexact::ops::cuda {
// Streams and graphs (graph.cu). A captured graph replays the exact kernels of the capture.
void* create_stream();
void destroy_stream(void* stream);
void graph_begin_capture(const ExecContext& ctx);
void* graph_end_capture(const ExecContext& ctx);  // an instantiated cudaGraphExec_t
void graph_launch(const ExecContext& ctx, void* exec);
void graph_destroy(void* exec);
// Counts reallocations of the kernels' scratch buffers (GEMM split-K partials, attention
// partials). A captured graph holds the old pointers, so whoever replays graphs must drop them
// when this changes.
uint64_t workspace_epoch();
void bump_workspace_epoch();
// Programmatic dependent launch of the forward-pass kernels (pdl.cuh), on by default. Read at
// launch time, so a CUDA graph keeps the mode it was captured with. Speed only.
bool pdl_enabled();
void set_pdl(bool on);
}  // namespace bitexact::ops::cuda
