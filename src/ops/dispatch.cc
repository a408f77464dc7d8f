// The op interface's entry points: checks shapes and dtypes once, then calls the backend of
// ctx.device. Kernels below trust what is checked here.
#include <algorithm>
#include <string>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::ops {
namespace {

[[noreturn]] void shape_error(const char* op, const std::string& what) {
  fail(ErrorKind::kInternal, std::string(op) + ": " + what);
}

void expect(bool ok, const char* op, const std::string& what) {
  if (!ok) shape_error(op, what);
}

void expect_rows(const Tensor& t, const char* op, const char* name) {
  expect(t.ndim >= 2 && t.stride[t.ndim - 1] == 1, op,
         std::string(name) + " must have a contiguous last dimension, got " + t.shape_str());
}

// CPU activations are f32; CUDA activations bf16 (checked by the CUDA backend).
void expect_activation(const ExecContext& ctx, const Tensor& t, const char* op, const char* name) {
  expect(t.device == ctx.device, op, std::string(name) + " is on the wrong device");
  if (ctx.device == Device::kCpu)
    expect(t.dtype == DType::kF32, op, std::string(name) + " must be F32 on CPU");
}

}  // namespace

#ifdef BITEXACT_WITH_CUDA
#define BITEXACT_DISPATCH(fn, ...) \
  (ctx.device == Device::kCpu ? cpu::fn(__VA_ARGS__) : cuda::fn(__VA_ARGS__))
#else
#define BITEXACT_DISPATCH(fn, ...)                                                       \
  (ctx.device == Device::kCpu                                                            \
       ? cpu::fn(__VA_ARGS__)                                                            \
       : fail(ErrorKind::kUnsupported, "this build has no CUDA backend (configure with " \
                                       "-DBITEXACT_CUDA=ON)"))
#endif

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y, int64_t plan_rows) {
  expect_rows(x, "linear", "x");
  expect_rows(y, "linear", "y");
  expect_activation(ctx, x, "linear", "x");
  expect_activation(ctx, y, "linear", "y");
  expect(x.ndim == 2 && w.ndim == 2 && y.ndim == 2, "linear", "x, w, y must be rank 2");
  expect(w.is_contiguous() && w.dim(1) == x.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0),
         "linear", "shapes x" + x.shape_str() + " w" + w.shape_str() + " y" + y.shape_str());
  expect(plan_rows == 0 || plan_rows >= w.dim(0), "linear", "plan_rows is smaller than the weight");
#ifdef BITEXACT_WITH_CUDA
  if (ctx.device == Device::kCuda) return cuda::linear(ctx, x, w, y, plan_rows);
#endif
  BITEXACT_DISPATCH(linear, ctx, x, w, y);  // the CPU order depends on K alone
}

void sum_partials(const ExecContext& ctx, const Tensor& partials, Tensor& out) {
  expect_rows(out, "sum_partials", "out");
  expect_activation(ctx, partials, "sum_partials", "partials");
  expect_activation(ctx, out, "sum_partials", "out");
  expect(partials.ndim == 3 && out.ndim == 2 && partials.is_contiguous() && partials.dim(0) >= 1 &&
             partials.dim(1) == out.dim(0) && partials.dim(2) == out.dim(1) && partials.dtype == out.dtype,
         "sum_partials", "partials" + partials.shape_str() + " out" + out.shape_str());
  BITEXACT_DISPATCH(sum_partials, ctx, partials, out);
}

void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  expect_rows(x, "rms_norm", "x");
  expect_activation(ctx, x, "rms_norm", "x");
  expect(out.ndim == x.ndim && out.dim(-1) == x.dim(-1) && out.dim(0) == x.dim(0), "rms_norm",
         "out" + out.shape_str() + " vs x" + x.shape_str());
  expect(weight.numel() == x.dim(-1), "rms_norm", "weight length != row length");
  BITEXACT_DISPATCH(rms_norm, ctx, x, weight, eps, out);
}

void add_rms_norm(const ExecContext& ctx, Tensor& residual, const Tensor& x, const Tensor& weight,
                  float eps, Tensor& out) {
  expect(residual.ndim == 2 && x.ndim == 2 && out.ndim == 2, "add_rms_norm", "rank 2 expected");
  expect(residual.dim(0) == x.dim(0) && residual.dim(1) == x.dim(1) && out.dim(1) == x.dim(1),
         "add_rms_norm", "shapes differ");
  expect(weight.numel() == x.dim(1), "add_rms_norm", "weight length != row length");
  BITEXACT_DISPATCH(add_rms_norm, ctx, residual, x, weight, eps, out);
}

bool norm_linear_fuses(const ExecContext& ctx, int64_t M, int64_t K) {
#ifdef BITEXACT_WITH_CUDA
  if (ctx.device == Device::kCuda) return cuda::norm_linear_fuses(ctx, M, K);
#endif
  (void)M, (void)K;
  return false;
}

void norm_linear(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                 const Tensor& norm_weight, float eps, Tensor* residual_out, const Tensor& w,
                 Tensor& y, Tensor& hidden) {
  expect(residual.ndim == 2 && hidden.ndim == 2 && hidden.dim(0) == residual.dim(0) &&
             hidden.dim(1) == residual.dim(1),
         "norm_linear", "residual" + residual.shape_str() + " hidden" + hidden.shape_str());
  expect((x == nullptr) == (residual_out == nullptr), "norm_linear", "x and residual_out come together");
  if (x != nullptr)
    expect(x->ndim == 2 && residual_out->ndim == 2 && x->dim(0) == residual.dim(0) &&
               x->dim(1) == residual.dim(1) && residual_out->dim(0) == residual.dim(0) &&
               residual_out->dim(1) == residual.dim(1) && residual_out->data != residual.data &&
               residual_out->data != x->data,
           "norm_linear", "x and residual_out must be [M, K] like residual, residual_out apart");
  expect(norm_weight.numel() == residual.dim(1), "norm_linear", "weight length != row length");
#ifdef BITEXACT_WITH_CUDA
  if (ctx.device == Device::kCuda && cuda::norm_linear_fuses(ctx, residual.dim(0), residual.dim(1))) {
    expect(w.ndim == 2 && w.dim(1) == residual.dim(1) && y.ndim == 2 && y.dim(0) == residual.dim(0) &&
               y.dim(1) == w.dim(0),
           "norm_linear", "shapes w" + w.shape_str() + " y" + y.shape_str());
    return cuda::norm_linear(ctx, residual, x, norm_weight, eps, residual_out, w, y);
  }
#endif
  // The two ops (the CPU reference, and CUDA where the fused kernel does not apply).
  if (x != nullptr) {
    copy(ctx, residual, *residual_out);
    add_rms_norm(ctx, *residual_out, *x, norm_weight, eps, hidden);
  } else {
    rms_norm(ctx, residual, norm_weight, eps, hidden);
  }
  linear(ctx, hidden, w, y);
}

bool swiglu_linear_fuses(const ExecContext& ctx, int64_t M, int64_t N, int64_t K) {
#ifdef BITEXACT_WITH_CUDA
  if (ctx.device == Device::kCuda) return cuda::swiglu_linear_fuses(ctx, M, N, K);
#endif
  (void)M, (void)N, (void)K;
  return false;
}

void swiglu_linear(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y, Tensor& act) {
  expect(gate_up.ndim == 2 && act.ndim == 2 && gate_up.dim(1) == 2 * act.dim(1) &&
             gate_up.dim(0) == act.dim(0) && w.ndim == 2 && w.dim(1) == act.dim(1) && y.ndim == 2 &&
             y.dim(0) == act.dim(0) && y.dim(1) == w.dim(0),
         "swiglu_linear", "gate_up" + gate_up.shape_str() + " act" + act.shape_str() + " w" +
                              w.shape_str() + " y" + y.shape_str());
#ifdef BITEXACT_WITH_CUDA
  if (ctx.device == Device::kCuda && cuda::swiglu_linear_fuses(ctx, act.dim(0), w.dim(0), act.dim(1)))
    return cuda::swiglu_linear(ctx, gate_up, w, y);
#endif
  silu_mul(ctx, gate_up, act);  // the two ops (the CPU reference, and CUDA elsewhere)
  linear(ctx, act, w, y);
}

void rope(const ExecContext& ctx, Tensor& x, const Tensor& positions, const Tensor& cos_sin,
          bool interleaved) {
  expect(x.ndim == 3 && x.stride[2] == 1, "rope", "x must be [M, H, Dh] with contiguous Dh");
  expect(x.dim(2) % 2 == 0 && cos_sin.dim(1) == x.dim(2), "rope", "cos_sin width != head_dim");
  expect(positions.dtype == DType::kI32 && positions.numel() == x.dim(0), "rope", "positions");
  BITEXACT_DISPATCH(rope, ctx, x, positions, cos_sin, interleaved);
}

void silu_mul(const ExecContext& ctx, const Tensor& gate_up, Tensor& out) {
  expect(gate_up.ndim == 2 && out.ndim == 2 && gate_up.dim(1) == 2 * out.dim(1) &&
             gate_up.dim(0) == out.dim(0),
         "silu_mul", "gate_up" + gate_up.shape_str() + " out" + out.shape_str());
  BITEXACT_DISPATCH(silu_mul, ctx, gate_up, out);
}

void embedding(const ExecContext& ctx, const Tensor& table, const Tensor& ids, Tensor& out) {
  expect(table.ndim == 2 && out.ndim == 2 && out.dim(1) == table.dim(1), "embedding", "shapes");
  expect(ids.dtype == DType::kI32 && ids.numel() == out.dim(0), "embedding", "ids");
  BITEXACT_DISPATCH(embedding, ctx, table, ids, out);
}

void gather_rows(const ExecContext& ctx, const Tensor& x, const Tensor& rows, Tensor& out) {
  expect(x.ndim == 2 && out.ndim == 2 && out.dim(1) == x.dim(1), "gather_rows", "shapes");
  expect(rows.dtype == DType::kI32 && rows.numel() == out.dim(0), "gather_rows", "rows");
  BITEXACT_DISPATCH(gather_rows, ctx, x, rows, out);
}

void kv_cache_write(const ExecContext& ctx, const Tensor& k, const Tensor& v, const Tensor& slots,
                    Tensor& k_cache, Tensor& v_cache) {
  expect(k.ndim == 3 && v.ndim == 3 && k_cache.ndim == 4 && v_cache.ndim == 4, "kv_cache_write",
         "k, v are [M,Hkv,Dh]; caches [blocks, block_size, Hkv, Dh]");
  expect(k.dim(1) == k_cache.dim(2) && k.dim(2) == k_cache.dim(3), "kv_cache_write", "head shape");
  expect(slots.dtype == DType::kI32 && slots.numel() == k.dim(0), "kv_cache_write", "slots");
  BITEXACT_DISPATCH(kv_cache_write, ctx, k, v, slots, k_cache, v_cache);
}

void qk_norm_rope_kv_write(const ExecContext& ctx, Tensor& q, Tensor& k, const Tensor& v,
                           const Tensor* q_norm, const Tensor* k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                           const Tensor& slots, Tensor& k_cache, Tensor& v_cache) {
  const char* op = "qk_norm_rope_kv_write";
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v}) {
    expect(t->ndim == 3 && t->stride[2] == 1, op,
           "q, k, v must be [M, heads, Dh] with contiguous Dh, got " + t->shape_str());
    expect_activation(ctx, *t, op, "q, k, v");
  }
  const int64_t M = q.dim(0), Hkv = k.dim(1), Dh = q.dim(2);
  expect(q.dtype == k.dtype && k.dtype == v.dtype, op, "q, k, v must share one dtype");
  expect(k.dim(0) == M && v.dim(0) == M && v.dim(1) == Hkv && k.dim(2) == Dh && v.dim(2) == Dh,
         op, "shapes q" + q.shape_str() + " k" + k.shape_str() + " v" + v.shape_str());
  expect(Dh % 2 == 0, op, "head_dim must be even");
  for (const Tensor* w : {q_norm, k_norm})
    if (w)
      expect(w->numel() == Dh && w->device == ctx.device, op,
             "norm weight must be [Dh] on the op's device");
  expect(cos_sin.ndim == 2 && cos_sin.dim(1) == Dh, op, "cos_sin width != head_dim");
  expect(positions.dtype == DType::kI32 && positions.numel() == M, op, "positions must be I32 [M]");
  expect(slots.dtype == DType::kI32 && slots.numel() == M, op, "slots must be I32 [M]");
  expect(k_cache.ndim == 4 && v_cache.ndim == 4 && k_cache.dim(2) == Hkv && k_cache.dim(3) == Dh,
         op, "caches must be [blocks, block_size, Hkv, Dh], got " + k_cache.shape_str());
  for (int i = 0; i < 4; ++i)
    expect(k_cache.dim(i) == v_cache.dim(i), op, "k and v caches differ in shape");
  BITEXACT_DISPATCH(qk_norm_rope_kv_write, ctx, q, k, v, q_norm, k_norm, eps, positions, cos_sin,
                    interleaved, slots, k_cache, v_cache);
}

void attention(const ExecContext& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const AttentionMeta& meta, float scale, Tensor& out) {
  expect(q.ndim == 3 && out.ndim == 3 && k_cache.ndim == 4, "attention", "ranks");
  expect(q.dim(2) == k_cache.dim(3) && q.dim(1) % k_cache.dim(2) == 0, "attention",
         "q heads must be a multiple of kv heads with equal head_dim");
  expect(meta.token_seq.numel() == q.dim(0) && meta.token_pos.numel() == q.dim(0), "attention",
         "meta length != tokens");
  expect(meta.block_size == k_cache.dim(1), "attention", "block size");
  BITEXACT_DISPATCH(attention, ctx, q, k_cache, v_cache, meta, scale, out);
}

void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out) {
  expect(logits.ndim == 2 && out.ndim == 2 && out.dtype == DType::kF32, "log_softmax", "shapes");
  BITEXACT_DISPATCH(log_softmax, ctx, logits, out);
}

void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals) {
  expect(x.ndim == 2 && x.stride[1] == 1 && (x.dtype == DType::kF32 || x.dtype == DType::kBF16), "top_tokens",
         "x must be [R,V] F32 or BF16 with contiguous rows");
  expect(ids.ndim == 2 && ids.dtype == DType::kI32 && ids.dim(0) == x.dim(0) && ids.is_contiguous(), "top_tokens",
         "ids must be contiguous I32 [R,n]");
  expect(vals.ndim == 2 && vals.dtype == DType::kF32 && vals.dim(0) == x.dim(0) && vals.dim(1) == ids.dim(1) &&
             vals.is_contiguous(), "top_tokens", "vals must be contiguous F32 [R,n]");
  expect(ids.dim(1) >= 1 && ids.dim(1) <= kMaxTopTokens && ids.dim(1) <= x.dim(1), "top_tokens",
         "n must be in [1, min(V, kMaxTopTokens)]");
  BITEXACT_DISPATCH(top_tokens, ctx, x, ids, vals);
}

void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals) {
  expect(logits.ndim == 2 && logits.stride[1] == 1 &&
             (logits.dtype == DType::kF32 || logits.dtype == DType::kBF16),
         "top_logprobs", "logits must be [R,V] F32 or BF16 with contiguous rows");
  expect(ids.ndim == 2 && ids.dtype == DType::kI32 && ids.dim(0) == logits.dim(0) && ids.is_contiguous(),
         "top_logprobs", "ids must be contiguous I32 [R,n]");
  expect(vals.ndim == 2 && vals.dtype == DType::kF32 && vals.dim(0) == logits.dim(0) &&
             vals.dim(1) == ids.dim(1) && vals.is_contiguous(),
         "top_logprobs", "vals must be contiguous F32 [R,n]");
  expect(ids.dim(1) >= 1 && ids.dim(1) <= kMaxTopTokens && ids.dim(1) <= logits.dim(1), "top_logprobs",
         "n must be in [1, min(V, kMaxTopTokens)]");
  BITEXACT_DISPATCH(top_logprobs, ctx, logits, ids, vals);
}

void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int max_top_k) {
  expect(logits.ndim == 2 && logits.stride[1] == 1 &&
             (logits.dtype == DType::kF32 || logits.dtype == DType::kBF16) && logits.device == ctx.device,
         "sample_tokens", "logits must be [R,V] F32 or BF16 with contiguous rows on the op's device");
  const int64_t R = logits.dim(0);
  expect(params.ndim == 2 && params.dtype == DType::kI32 && params.dim(0) == R &&
             params.dim(1) == kSampleRowWords && params.is_contiguous() && params.device == ctx.device &&
             reinterpret_cast<uintptr_t>(params.data) % alignof(SampleRow) == 0,
         "sample_tokens", "params must be 8-byte aligned contiguous I32 [R, kSampleRowWords] (SampleRow)");
  expect(ids.ndim == 1 && ids.dtype == DType::kI32 && ids.dim(0) == R && ids.is_contiguous() &&
             ids.device == ctx.device, "sample_tokens", "ids must be contiguous I32 [R]");
  expect(logprobs.ndim == 1 && logprobs.dtype == DType::kF32 && logprobs.dim(0) == R &&
             logprobs.is_contiguous() && logprobs.device == ctx.device,
         "sample_tokens", "logprobs must be contiguous F32 [R]");
  expect(logits.dim(1) >= 1 && logits.dim(1) <= (int64_t(1) << 23), "sample_tokens",
         "V must be in [1, 2^23]");  // the filters' weight sums fit 64 bits (sample_filter.h)
  expect(max_top_k >= 0 && max_top_k <= kMaxSampleTopK, "sample_tokens", "max_top_k must be in [0, kMaxSampleTopK]");
  if (ctx.device == Device::kCpu) {  // the parameters are host memory: check them here
    const SampleRow* p = static_cast<const SampleRow*>(params.data);
    for (int64_t r = 0; r < R; ++r)
      expect(p[r].temperature >= 0.0f && p[r].temperature <= 3.4e38f && p[r].top_k >= 0 &&
                 p[r].top_p_units <= (uint64_t(1) << 32) && p[r].min_p_units <= (uint64_t(1) << 40),
             "sample_tokens", "row " + std::to_string(r) + ": temperature must be finite and >= 0, "
                              "top_k >= 0, top_p_units <= 2^32, min_p_units <= 2^40");
  }
  BITEXACT_DISPATCH(sample_tokens, ctx, logits, params, ids, logprobs, max_top_k);
}

int64_t moe_groups_len(int64_t rows, int64_t num_experts) {
  // Offsets and grouped rows, then the CUDA backend's two tile maps (16- and 64-row tiles of one
  // expert each, see ops/cuda/moe.cu): a count and (expert, first entry) pairs, at most
  // ceil(rows / T) + min(E, rows) tiles.
  int64_t n = num_experts + 1 + rows;
  for (int64_t t : {16, 64}) n += 1 + 2 * ((rows + t - 1) / t + std::min(num_experts, rows));
  return n;
}

namespace {
void check_routing(const ExecContext& ctx, const MoeRouting& r, const char* op) {
  const Tensor &ids = r.expert_ids, &w = r.weights, &g = r.groups;
  expect(ids.ndim == 2 && ids.dtype == DType::kI32 && ids.is_contiguous() && ids.device == ctx.device, op,
         "expert_ids must be contiguous I32 [M,k] on the op's device");
  expect(w.ndim == 2 && w.dtype == DType::kF32 && w.is_contiguous() && w.device == ctx.device &&
             w.dim(0) == ids.dim(0) && w.dim(1) == ids.dim(1), op,
         "weights must be contiguous F32 [M,k] like expert_ids");
  expect(r.num_experts >= 1 && ids.dim(1) >= 1 && ids.dim(1) <= r.num_experts, op,
         "top-k must be in [1, num_experts]");
  expect(g.dtype == DType::kI32 && g.is_contiguous() && g.device == ctx.device &&
             g.numel() >= moe_groups_len(ids.numel(), r.num_experts), op,
         "groups must be contiguous I32 of moe_groups_len(M * k, E) elements");
}
}  // namespace

void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing) {
  expect_rows(router_logits, "moe_route", "router_logits");
  expect_activation(ctx, router_logits, "moe_route", "router_logits");
  check_routing(ctx, routing, "moe_route");
  expect(router_logits.ndim == 2 && router_logits.dim(1) == routing.num_experts &&
             router_logits.dim(0) == routing.expert_ids.dim(0), "moe_route",
         "router_logits" + router_logits.shape_str() + " must be [M, num_experts]");
  BITEXACT_DISPATCH(moe_route, ctx, router_logits, norm_topk_prob, routing);
}

void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w,
                const MoeRouting& routing, Tensor& y) {
  expect_rows(x, "moe_linear", "x");
  expect_rows(y, "moe_linear", "y");
  expect_activation(ctx, x, "moe_linear", "x");
  expect_activation(ctx, y, "moe_linear", "y");
  check_routing(ctx, routing, "moe_linear");
  const int64_t M = routing.expert_ids.dim(0), R = routing.expert_ids.numel();
  expect(x.ndim == 2 && y.ndim == 2 && w.ndim == 3 && w.is_contiguous() && w.device == ctx.device,
         "moe_linear", "x, y must be rank 2 and w a contiguous [E, N, K]");
  expect(w.dim(0) == routing.num_experts && w.dim(2) == x.dim(1) && y.dim(1) == w.dim(1) &&
             y.dim(0) == R && (x.dim(0) == M || x.dim(0) == R), "moe_linear",
         "shapes x" + x.shape_str() + " w" + w.shape_str() + " y" + y.shape_str() +
             " for M*k = " + std::to_string(R));
  BITEXACT_DISPATCH(moe_linear, ctx, x, w, routing, y);
}

void moe_linear_swiglu(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w,
                       const MoeRouting& routing, Tensor& h, Tensor& y) {
  const char* op = "moe_linear_swiglu";
  expect_rows(gate_up, op, "gate_up");
  expect_rows(h, op, "h");
  expect_rows(y, op, "y");
  expect_activation(ctx, gate_up, op, "gate_up");
  expect_activation(ctx, h, op, "h");
  expect_activation(ctx, y, op, "y");
  check_routing(ctx, routing, op);
  const int64_t R = routing.expert_ids.numel();
  expect(gate_up.ndim == 2 && h.ndim == 2 && y.ndim == 2 && w.ndim == 3 && w.is_contiguous() &&
             w.device == ctx.device,
         op, "gate_up, h, y must be rank 2 and w a contiguous [E, N, I]");
  expect(w.dim(0) == routing.num_experts && gate_up.dim(0) == R && gate_up.dim(1) == 2 * w.dim(2) &&
             h.dim(0) == R && h.dim(1) == w.dim(2) && y.dim(0) == R && y.dim(1) == w.dim(1),
         op, "shapes gate_up" + gate_up.shape_str() + " w" + w.shape_str() + " h" + h.shape_str() +
                 " y" + y.shape_str() + " for M*k = " + std::to_string(R) +
                 ": gate_up must be [M*k, 2I], h [M*k, I], y [M*k, N]");
  BITEXACT_DISPATCH(moe_linear_swiglu, ctx, gate_up, w, routing, h, y);
}

void moe_combine(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing, Tensor& out) {
  expect_rows(y, "moe_combine", "y");
  expect_rows(out, "moe_combine", "out");
  expect_activation(ctx, y, "moe_combine", "y");
  expect_activation(ctx, out, "moe_combine", "out");
  check_routing(ctx, routing, "moe_combine");
  expect(y.ndim == 2 && out.ndim == 2 && y.dim(0) == routing.expert_ids.numel() &&
             out.dim(0) == routing.expert_ids.dim(0) && out.dim(1) == y.dim(1), "moe_combine",
         "shapes y" + y.shape_str() + " out" + out.shape_str() + ": y must be [M*k, H], out [M, H]");
  BITEXACT_DISPATCH(moe_combine, ctx, y, routing, out);
}

void moe_combine_add_rms_norm(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing,
                              Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  const char* op = "moe_combine_add_rms_norm";
  expect_rows(y, op, "y");
  expect_rows(residual, op, "residual");
  expect_rows(out, op, "out");
  expect_activation(ctx, y, op, "y");
  expect_activation(ctx, residual, op, "residual");
  expect_activation(ctx, out, op, "out");
  check_routing(ctx, routing, op);
  const int64_t M = routing.expert_ids.dim(0);
  expect(y.ndim == 2 && residual.ndim == 2 && out.ndim == 2 &&
             y.dim(0) == routing.expert_ids.numel() && residual.dim(0) == M && out.dim(0) == M &&
             residual.dim(1) == y.dim(1) && out.dim(1) == y.dim(1), op,
         "shapes y" + y.shape_str() + " residual" + residual.shape_str() + " out" +
             out.shape_str() + ": y must be [M*k, H], residual and out [M, H]");
  expect(weight.numel() == y.dim(1) && weight.device == ctx.device, op,
         "weight must hold H elements on the op's device");
  BITEXACT_DISPATCH(moe_combine_add_rms_norm, ctx, y, routing, residual, weight, eps, out);
}

void fill_uniform(const ExecContext& ctx, Tensor& t, uint64_t seed, float scale, float offset) {
  expect(t.is_contiguous() && t.dtype != DType::kI32, "fill_uniform", "contiguous float tensor");
  BITEXACT_DISPATCH(fill_uniform, ctx, t, seed, scale, offset);
}

void copy(const ExecContext& ctx, const Tensor& src, Tensor& dst) {
  expect(src.numel() == dst.numel(), "copy", "element counts differ");
  if (src.device == Device::kCpu && dst.device == Device::kCpu) return cpu::copy(ctx, src, dst);
#ifdef BITEXACT_WITH_CUDA
  cuda::copy(ctx, src, dst);
#else
  fail(ErrorKind::kUnsupported, "this build has no CUDA backend");
#endif
}

void synchronize(const ExecContext& ctx) { BITEXACT_DISPATCH(synchronize, ctx); }

}  // namespace bitexact::ops
