// The one op interface of bitexact: free functions on tensor views plus an execution context.
// ops/cpu and ops/cuda implement it; dispatch.cc picks one by ctx.device. Shapes are checked here
// once (check_*), kernels below trust them. Every op is batch-invariant when
// ctx.batch_invariant is set: a row's result depends on that row's inputs and the weights only
// (ARCHITECTURE.md section 2). With it unset, ops may choose reduction orders by batch size, as
// cuBLAS heuristics and split-KV attention do; that mode exists to measure the cost of the
// contract and to prove the invariance tests can fail.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace bitexact {
class ThreadPool;
}

namespace bitexact::ops {

struct ExecContext {
  Device device = Device::kCpu;
  bool batch_invariant = true;
  ThreadPool* pool = nullptr;  // CPU: worker threads (nullptr: the default pool)
  void* stream = nullptr;      // CUDA: cudaStream_t
};

// Attention keys are visited in chunks of this many positions, aligned to absolute position
// ([0,S), [S,2S), ...). Each chunk gives a partial (max, sum, output) and partials merge left to
// right with merge_attention_partials' arithmetic. Every attention kernel (prefill, decode, CPU,
// CUDA) keeps this structure, so a token's output does not depend on which kernel ran it.
constexpr int kAttentionChunk = 256;

// Per-token metadata for attention over a paged KV cache. All I32 tensors live on ctx.device.
// Step metadata (these tensors, and the positions and slots of qk_norm_rope_kv_write) must be
// written by a copy, or by a kernel two or more launches before the op that reads them: CUDA
// kernels read them before waiting for the previous kernel (pdl.cuh). The model uploads them
// once per step, before its first kernel.
struct AttentionMeta {
  Tensor token_seq;    // I32 [M]: index of the sequence (row of block_table) of each query token
  Tensor token_pos;    // I32 [M]: absolute position; the token attends keys at positions [0, pos]
  Tensor block_table;  // I32 [num_seqs, max_blocks]: physical block of each logical KV block
  int block_size = 16;     // positions per KV block
  int max_positions = 0;   // host-side upper bound on pos + 1 over the batch (sizes launch grids)
};

// y[M,N] = x[M,K] * w[N,K]^T, accumulated in f32 over K in one order fixed by (N, K).
// x, y: activation dtype (f32 on CPU, bf16 on CUDA); w: f32, bf16 or f16. Rows of x and y may be
// strided (stride[0] >= K or N); the last dimension is contiguous. plan_rows > 0: take the
// K order of a weight with plan_rows rows instead of N (a tensor-parallel column shard of a
// [plan_rows, K] weight then adds in the order of the whole weight; the CPU order depends on K
// alone and ignores it).
void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y, int64_t plan_rows = 0);

// out[M,N] = ((p[0] + p[1]) + p[2]) + ... + p[P-1]: partials [P,M,N] (activation dtype,
// contiguous) folded left to right in f32, rounded once to out's dtype; out's rows may be
// strided. The order depends on P alone: tensor-parallel row-parallel layers gather their
// K-part partials and every rank folds them here, so TP = 1, 2, 4, 8 add the same numbers in
// the same order (docs/notes/tensor_parallel.md).
void sum_partials(const ExecContext& ctx, const Tensor& partials, Tensor& out);

// out[R,D] = x / sqrt(mean(x^2) + eps) * weight[D]. x may be [R,D] or [M,H,D] (per-head norm,
// qwen3's q/k norm); out has the same shape and may alias x.
void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor& out);

// residual[M,D] += x[M,D] (rounded to the residual's dtype), then out = rms_norm(residual).
void add_rms_norm(const ExecContext& ctx, Tensor& residual, const Tensor& x, const Tensor& weight,
                  float eps, Tensor& out);

// The norm before a projection and the projection in one op: h = residual + x rounded to the
// residual's dtype, written to residual_out (which must not alias residual or x), or h = residual
// when x is null (residual_out null too); then y = linear(rms_norm(h, norm_weight, eps), w).
// Bit for bit add_rms_norm (or rms_norm) followed by linear, which is what runs where
// norm_linear_fuses is false, with `hidden` [M, K] as the normalised rows (unspecified after a
// fused call). Where it is true (CUDA, batch-invariant mode, decode sizes: 1..4 rows) it is one
// GEMM whose CTAs each normalise the rows, so the norm's kernel leaves the step's critical path.
constexpr int kNormLinearMaxRows = 4;  // the most rows norm_linear_fuses accepts
bool norm_linear_fuses(const ExecContext& ctx, int64_t M, int64_t K);
void norm_linear(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                 const Tensor& norm_weight, float eps, Tensor* residual_out, const Tensor& w,
                 Tensor& y, Tensor& hidden);

// y = linear(silu_mul(gate_up), w), gate_up [M, 2K]: bit for bit silu_mul then linear, which
// is what runs where swiglu_linear_fuses is false, with `act` [M, K] as silu_mul's output
// (unspecified after a fused call). Where it is true (CUDA, batch-invariant mode, 1..4 rows) the
// GEMM's CTAs make their x themselves: one kernel instead of two.
bool swiglu_linear_fuses(const ExecContext& ctx, int64_t M, int64_t N, int64_t K);
void swiglu_linear(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y, Tensor& act);

// Rotary embedding in place on x[M,H,Dh] (strided rows allowed). cos_sin[P, Dh]: row p holds
// cos(p*f_i) for i < Dh/2 then sin(p*f_i); the table is computed once on the host so every device
// rotates with the same values. interleaved: pairs (2i, 2i+1) (GGUF llama); else (i, i+Dh/2).
void rope(const ExecContext& ctx, Tensor& x, const Tensor& positions, const Tensor& cos_sin,
          bool interleaved);

// out[M,F] = silu(gate_up[:, :F]) * gate_up[:, F:]
void silu_mul(const ExecContext& ctx, const Tensor& gate_up, Tensor& out);

// out[M,D] = table[ids[m], :], converted to out's dtype. ids: I32 [M], checked against V.
void embedding(const ExecContext& ctx, const Tensor& table, const Tensor& ids, Tensor& out);

// out[i,:] = x[rows[i], :]. rows: I32 [R].
void gather_rows(const ExecContext& ctx, const Tensor& x, const Tensor& rows, Tensor& out);

// Writes k[M,Hkv,Dh] and v into the paged caches [num_blocks, block_size, Hkv, Dh] at
// slots[M] (slot = block * block_size + offset).
void kv_cache_write(const ExecContext& ctx, const Tensor& k, const Tensor& v, const Tensor& slots,
                    Tensor& k_cache, Tensor& v_cache);

// The attention preamble of a layer as one op (one kernel on CUDA): exactly
//   rms_norm(q, *q_norm) in place; rms_norm(k, *k_norm) in place (each skipped when nullptr:
//   llama has no q/k norm); rope(q); rope(k); kv_cache_write(k, v, slots)
// with the same bits as those five ops, including the rounding of the normed q and k to the
// activation dtype before the rotation. q[M,Hq,Dh], k and v [M,Hkv,Dh] (strided rows allowed,
// e.g. views into the fused qkv row); q_norm, k_norm [Dh]; the rest as for rope and
// kv_cache_write. q and k end normed and rotated (attention reads q from there). positions and
// slots are step metadata (see AttentionMeta).
void qk_norm_rope_kv_write(const ExecContext& ctx, Tensor& q, Tensor& k, const Tensor& v,
                           const Tensor* q_norm, const Tensor* k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                           const Tensor& slots, Tensor& k_cache, Tensor& v_cache);

// out[M,Hq,Dh] = softmax(q k^T * scale) v over keys [0, pos] of the token's sequence, GQA with
// Hq / Hkv query heads per KV head. See kAttentionChunk for the reduction order.
void attention(const ExecContext& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const AttentionMeta& meta, float scale, Tensor& out);

// out[M,V] = log_softmax(logits[M,V]) in f32.
void log_softmax(const ExecContext& ctx, const Tensor& logits, Tensor& out);

// The n = ids.dim(1) largest entries of each row of x[R,V] (bf16 or f32), ordered by (value
// desc, column asc): ids[R,n] I32 and vals[R,n] F32. Greedy decoding (n = 1 on the logits) and
// top logprobs on the model's device, so a decode step returns a few bytes per row instead of
// the vocabulary. NaN ranks below every number. n <= kMaxTopTokens.
constexpr int kMaxTopTokens = 32;
void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals);

// top_tokens(log_softmax(logits)) without the vocabulary-sized f32 rows: the same ids and values
// (bit for bit, on the same device), for the logprobs of greedy rows.
void top_logprobs(const ExecContext& ctx, const Tensor& logits, Tensor& ids, Tensor& vals);

// Sampling on the model's device. Per row r, params[r] (a SampleRow, as I32 [R, kSampleRowWords]
// on ctx.device): temperature 0 takes the greedy token (top_tokens' top-1); else the exponential
// race of ops/sample_race.h among the tokens that top_k (0 or >= V: off), then min_p, then top_p
// keep of the row sorted by (logit desc, id asc), with the filters of ops/sample_filter.h (integer
// weights: any summation order gives the same kept set): the same draw as the host sampler
// (engine/sampler.cc) makes. ids[r] (I32 [R]) gets the token and logprobs[r] (F32 [R]) its
// log_softmax value: the bits ops::log_softmax writes on the same device. max_top_k (<=
// kMaxSampleTopK) is a cost hint: the CUDA backend ranks that many candidates per row
// (top_tokens with n = max_top_k, whose cost grows with n) and draws a plain top-k row with
// top_k <= max_top_k from them; rows with a larger top_k, or with top_p / min_p, take the
// sort-free radix select (ops/cuda/sample_select.cuh). A row's result depends on its own logits
// and params only, never on max_top_k or the other rows.
struct SampleRow {
  float temperature = 0.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;
  uint64_t token_index = 0;
  uint64_t top_p_units = 0;  // filter::top_p_units(top_p): ceil(top_p 2^32), 0 = off (<= 2^32)
  uint64_t min_p_units = 0;  // filter::min_p_units(min_p): ceil(min_p 2^40), 0 = off (<= 2^40)
};
constexpr int kSampleRowWords = int(sizeof(SampleRow) / 4);
constexpr int kMaxSampleTopK = kMaxTopTokens;
void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int max_top_k = kMaxSampleTopK);

// Mixture of experts (qwen3_moe). M tokens each pick k of E experts; row r = m * k + s of the
// expert ops is slot s of token m. Every op below computes a row from that row's inputs only:
// which other tokens chose the same expert, and how many, never reaches the arithmetic.
struct MoeRouting {
  Tensor expert_ids;  // I32 [M, k]: slots ordered by (probability desc, expert id asc)
  Tensor weights;     // F32 [M, k]: softmax probability, renormalised over the k if asked
  // I32 [moe_groups_len(M * k, E)]: the rows grouped by expert. [0, E]: offsets (expert e owns
  // entries [offsets[e], offsets[e+1]) of the next part); [E+1, E+1+M*k): rows, ascending within
  // an expert; the rest is backend scratch (CUDA tile maps).
  Tensor groups;
  int64_t num_experts = 0;
};
int64_t moe_groups_len(int64_t rows, int64_t num_experts);

// Routing from router_logits[M,E] (activation dtype): softmax in f32, the k = expert_ids.dim(1)
// largest probabilities by (prob desc, id asc), divided by their sum when norm_topk_prob.
// Fills every tensor of `routing` (all on ctx.device; no host sync on CUDA).
void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing);

// y[r, :] = x[r', :] * w[e, :, :]^T with e = expert_ids[r] and r' = r (x has M*k rows) or
// r / k (x has M rows: every slot reads its token's row). w: [E, N, K] contiguous. Each element
// is accumulated over K in the order `linear` uses for an (N, K) weight (the same bits as
// linear() on that row alone), whatever the group sizes. y: [M*k, N].
void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w,
                const MoeRouting& routing, Tensor& y);

// The SwiGLU experts' down projection: moe_linear(silu_mul(gate_up), w, routing) with the same
// bits as the two ops. gate_up: [M*k, 2I] (moe_linear's output for this routing), w: [E, N, I],
// y: [M*k, N]. h: [M*k, I] workspace, written (silu_mul(gate_up)) by the paths that do not fuse
// (CUDA fuses the SiLU-and-multiply into the GEMM's operand load at small batches). Because
// gate_up came from an op that ran after moe_route, CUDA may read the routing before waiting
// for the previous kernel (pdl.cuh); call it only so.
void moe_linear_swiglu(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w,
                       const MoeRouting& routing, Tensor& h, Tensor& y);

// out[m, :] = sum over s = 0..k-1, in slot order, of weights[m, s] * y[m*k + s, :]: one f32
// accumulator per element (fma), rounded to out's dtype once. y: [M*k, H], out: [M, H].
void moe_combine(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing, Tensor& out);

// moe_combine(y, routing) rounded to the activation dtype, then add_rms_norm(residual, that,
// weight, eps, out): the same bits as the two ops, in one pass (one kernel on CUDA). The sparse
// block's last step fused with the residual add and the next layer's norm. residual, out: [M, H].
void moe_combine_add_rms_norm(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing,
                              Tensor& residual, const Tensor& weight, float eps, Tensor& out);

// t[i] = offset + scale * (2u - 1), u uniform in [0,1) from Philox(seed, i): dummy weights
// (`--load-format dummy`), the same values on every device. t must be contiguous.
void fill_uniform(const ExecContext& ctx, Tensor& t, uint64_t seed, float scale, float offset);

// Copies between tensors of equal shape, converting dtype and crossing devices as needed.
void copy(const ExecContext& ctx, const Tensor& src, Tensor& dst);

// Waits for queued device work (no-op on CPU).
void synchronize(const ExecContext& ctx);

}  // namespace bitexact::ops
