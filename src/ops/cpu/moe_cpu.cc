// CPU mixture-of-experts ops: routing (f32 softmax, top-k by (probability desc, expert id asc)),
// grouping of the (token, slot) rows by expert, the grouped expert GEMM and the slot-ordered
// combine. The expert GEMM gathers each expert's rows and runs cpu::linear on them, whose
// elements are each one dot() in simd.h's fixed order: a row's bits cannot depend on how many
// rows shared its expert (in invariant mode; the non-invariant mode splits K for small groups).
// moe_combine_add_rms_norm adds each combined row to the residual as add_rms_norm does.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/rows.h"
#include "ops/cpu/simd.h"
#include "ops/top_key.h"

namespace bitexact::ops::cpu {
namespace {

ThreadPool& pool_of(const ExecContext& ctx) { return ctx.pool ? *ctx.pool : default_thread_pool(); }

// Softmax of one router row, then its k best experts in (prob desc, id asc) order.
void route_row(const float* logits, int64_t E, int64_t k, bool norm, std::vector<float>& p,
               std::vector<uint64_t>& keys, int32_t* ids, float* weights) {
  float mx = -INFINITY;
  for (int64_t e = 0; e < E; ++e) mx = std::max(mx, logits[e]);
  // The sum runs in 8 lanes, as log_softmax's: its order is a function of E alone.
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t e = 0; e < E; ++e) {
    p[size_t(e)] = std::exp(logits[e] - mx);
    lanes[e & 7] += p[size_t(e)];
  }
  const float sum = reduce_lanes(lanes);
  for (int64_t e = 0; e < E; ++e) keys[size_t(e)] = top_key(p[size_t(e)] / sum, int32_t(e));
  // k passes of a max over unique keys: the lowest id wins among equal probabilities. A chosen
  // key is set to 0, below every real key.
  for (int64_t s = 0; s < k; ++s) {
    size_t best = 0;
    for (size_t e = 1; e < size_t(E); ++e)
      if (keys[e] > keys[best]) best = e;
    ids[s] = int32_t(best);
    weights[s] = p[best] / sum;
    keys[best] = 0;
  }
  if (norm) {
    float total = 0.0f;  // slot order
    for (int64_t s = 0; s < k; ++s) total += weights[s];
    for (int64_t s = 0; s < k; ++s) weights[s] /= total;
  }
}

// Counting sort of rows by expert, stable: rows ascend within each expert.
void group_rows(const int32_t* ids, int64_t R, int64_t E, int32_t* groups) {
  int32_t* offsets = groups;
  int32_t* rows = groups + E + 1;
  std::fill(offsets, offsets + E + 1, 0);
  for (int64_t r = 0; r < R; ++r) ++offsets[ids[r] + 1];
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> cursor(offsets, offsets + E);
  for (int64_t r = 0; r < R; ++r) rows[cursor[size_t(ids[r])]++] = int32_t(r);
}

// Non-invariant mode: experts with at most this many rows split K (see split_k_linear).
constexpr int64_t kSmallGroup = 4;

// y = x w^T with K cut into 4 parts (2 when K < 32) summed left to right: another rounding than
// dot() over the whole K, used only for small expert groups in non-invariant mode.
template <typename W>
void split_k_typed(const Tensor& x, const W* w, Tensor& y, ThreadPool& pool) {
  const int64_t M = x.dim(0), K = x.dim(1), N = y.dim(1);
  const int splits = K >= 32 ? 4 : 2;
  pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = n0; n < n1; ++n) {
        float sum = 0.0f;
        for (int s = 0; s < splits; ++s) {
          const int64_t k0 = K * s / splits, k1 = K * (s + 1) / splits;
          sum += dot(x.ptr<float>() + m * x.stride[0] + k0, w + n * K + k0, k1 - k0);
        }
        y.ptr<float>()[m * y.stride[0] + n] = sum;
      }
  });
}

void split_k_linear(const Tensor& x, const Tensor& w, Tensor& y, ThreadPool& pool) {
  switch (w.dtype) {
    case DType::kF32:
      return split_k_typed(x, w.ptr<float>(), y, pool);
    case DType::kBF16:
      return split_k_typed(x, w.ptr<Bf16>(), y, pool);
    case DType::kF16:
      return split_k_typed(x, w.ptr<F16>(), y, pool);
    default:
      fail(ErrorKind::kUnsupported, "moe_linear: weight dtype " + std::string(dtype_name(w.dtype)));
  }
}

}  // namespace

void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing) {
  const int64_t M = router_logits.dim(0), E = router_logits.dim(1), k = routing.expert_ids.dim(1);
  int32_t* ids = routing.expert_ids.ptr<int32_t>();
  float* weights = routing.weights.ptr<float>();
  pool_of(ctx).parallel_for(M, 8, [&](int64_t m0, int64_t m1) {
    std::vector<float> p(static_cast<size_t>(E));
    std::vector<uint64_t> keys(static_cast<size_t>(E));
    for (int64_t m = m0; m < m1; ++m)
      route_row(router_logits.ptr<float>() + m * router_logits.stride[0], E, k, norm_topk_prob, p,
                keys, ids + m * k, weights + m * k);
  });
  group_rows(ids, M * k, E, routing.groups.ptr<int32_t>());
}

void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, const MoeRouting& routing,
                Tensor& y) {
  const int64_t E = routing.num_experts, R = routing.expert_ids.numel();
  const int64_t k = routing.expert_ids.dim(1), N = w.dim(1), K = w.dim(2);
  const int32_t* offsets = routing.groups.ptr<int32_t>();
  const int32_t* rows = offsets + E + 1;
  // x has one row per token (every slot reads it) or one per (token, slot); with k = 1 the two
  // readings are the same.
  const int64_t x_div = x.dim(0) == R ? 1 : k;
  const size_t w_expert_bytes = size_t(N * K) * dtype_size(w.dtype);
  std::vector<float> xg, yg;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = offsets[e], count = offsets[e + 1] - begin;
    if (count == 0) continue;
    xg.resize(size_t(count * K));
    yg.resize(size_t(count * N));
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(xg.data() + i * K, x.ptr<float>() + (rows[begin + i] / x_div) * x.stride[0],
                  size_t(K) * 4);
    Tensor xt = Tensor::view(xg.data(), DType::kF32, {count, K});
    Tensor yt = Tensor::view(yg.data(), DType::kF32, {count, N});
    Tensor we =
        Tensor::view(static_cast<char*>(w.data) + size_t(e) * w_expert_bytes, w.dtype, {N, K});
    // Invariant mode: each element is dot(x_row, w_col), whatever `count` is. Non-invariant mode
    // splits K when count <= kSmallGroup, so a token's bits depend on how many others chose
    // this expert (as grouped-GEMM heuristics pick split-K by tokens per expert).
    if (!ctx.batch_invariant && count <= kSmallGroup && K >= 16)
      split_k_linear(xt, we, yt, pool_of(ctx));
    else
      cpu::linear(ctx, xt, we, yt);
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(y.ptr<float>() + rows[begin + i] * y.stride[0], yg.data() + i * N, size_t(N) * 4);
  }
}

// The reference definition: the two ops (the CPU has no launch to save).
void moe_linear_swiglu(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w,
                       const MoeRouting& routing, Tensor& h, Tensor& y) {
  cpu::silu_mul(ctx, gate_up, h);
  cpu::moe_linear(ctx, h, w, routing, y);
}

void moe_combine(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing, Tensor& out) {
  const int64_t M = out.dim(0), H = out.dim(1), k = routing.expert_ids.dim(1);
  const float* weights = routing.weights.ptr<float>();
  pool_of(ctx).parallel_for(M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* o = out.ptr<float>() + m * out.stride[0];
      for (int64_t h = 0; h < H; ++h) {
        float acc = 0.0f;
        for (int64_t s = 0; s < k; ++s)
          acc = std::fma(weights[m * k + s], y.ptr<float>()[(m * k + s) * y.stride[0] + h], acc);
        o[h] = acc;
      }
    }
  });
}

// The combine added to the residual element by element, exactly as add_rms_norm adds its x (the
// combine is f32 here, so there is no rounding between), then cpu::rms_norm of the residual.
void moe_combine_add_rms_norm(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing,
                              Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  const int64_t M = residual.dim(0), H = residual.dim(1), k = routing.expert_ids.dim(1);
  const float* weights = routing.weights.ptr<float>();
  pool_of(ctx).parallel_for(M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* res = row_ptr<float>(residual, m);
      for (int64_t h = 0; h < H; ++h) {
        float acc = 0.0f;  // moe_combine's fma sequence
        for (int64_t s = 0; s < k; ++s)
          acc = std::fma(weights[m * k + s], y.ptr<float>()[(m * k + s) * y.stride[0] + h], acc);
        res[h] += acc;
      }
    }
  });
  cpu::rms_norm(ctx, residual, weight, eps, out);
}

}  // namespace bitexact::ops::cpu
