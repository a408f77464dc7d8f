// A tensor-parallel rank's steps inside Model::run (vocab-parallel embedding, row-parallel
// layers, MoE experts split along their intermediate dimension, vocab-parallel LM head) and the
// loading of a group: full weights on the host, one sharded Model per rank, a front Model that
// the engine drives. Collectives only gather; every sum is ops::sum_partials' fixed fold.
#include <algorithm>

#include "model/model_internal.h"
#include "model/moe.h"
#include "model/tensor_parallel.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::model {
namespace {

DType act_dtype(Device d) { return d == Device::kCpu ? DType::kF32 : DType::kBF16; }

// Slot s of a [S, rows, cols] buffer as a [rows, cols] tensor.
Tensor slot(const Tensor& all, int64_t s) {
  Tensor t = all;
  t.data =
      static_cast<char*>(all.data) + size_t(s * all.dim(1) * all.dim(2)) * dtype_size(all.dtype);
  t.ndim = 2;
  t.shape = {all.dim(1), all.dim(2), 0, 0};
  t.stride = {all.dim(2), 1, 0, 0};
  return t;
}

// Columns [c0, c0 + n) of a [rows, C] tensor (row-strided view).
Tensor columns(const Tensor& x, int64_t c0, int64_t n) {
  Tensor t = x;
  t.data = static_cast<char*>(x.data) + size_t(c0) * dtype_size(x.dtype);
  t.shape[1] = n;
  return t;
}

}  // namespace

int64_t Model::tp_plan_rows(TpColumn which) const {
  if (!tp_) return 0;
  const io::ModelConfig& f = tp_->full;
  switch (which) {
    case TpColumn::kQkv:
      return (f.num_attention_heads + 2 * f.num_key_value_heads) * f.head_dim;
    case TpColumn::kGateUp:
      return 2 * f.intermediate_size;
  }
  return 0;
}

void Model::tp_embed(const DeviceBatch& b, Tensor& resid) {
  TpRank& t = *tp_;
  const int64_t M = b.tokens, H = t.full.hidden_size, S = t.layout.size;
  const DType act = act_dtype(ctx_.device);
  BITEXACT_CHECK(int64_t(t.local_ids.size()) == M && int64_t(t.select.size()) == M,
                 "tp: batch ids not prepared");
  auto ids_tensor = [&](std::vector<int32_t>& host, Buffer& dev) {
    Tensor h = Tensor::view(host.data(), DType::kI32, {M});
    if (ctx_.device == Device::kCpu) return h;
    TpRank::ensure(dev, size_t(M) * 4, ctx_.device);
    Tensor d = dev.as(DType::kI32, {M});
    ops::copy(ctx_, h, d);
    return d;
  };
  TpRank::ensure(t.gathered, size_t(S * M * H) * dtype_size(act), ctx_.device);
  Tensor all = t.gathered.as(act, {S, M, H});
  Tensor mine = slot(all, t.layout.rank);
  // Rows of ids this rank does not own read row 0 of its shard and are dropped by the select.
  ops::embedding(ctx_, w_.embed, ids_tensor(t.local_ids, t.ids_dev), mine);
  t.comm->all_gather(mine.data, all.data, mine.nbytes(), ctx_.stream);
  ops::gather_rows(ctx_, all.reshape({S * M, H}), ids_tensor(t.select, t.select_dev), resid);
}

void Model::tp_row_parallel(const Tensor& x, size_t layer, bool mlp, Tensor& y) {
  TpRank& t = *tp_;
  const TpLayout& L = t.layout;
  const std::vector<Tensor>& parts = mlp ? t.down_parts[layer] : t.wo_parts[layer];
  const int64_t K = mlp ? t.full.intermediate_size : t.full.num_attention_heads * t.full.head_dim;
  const int64_t x0 = mlp ? 0 : L.o_offset;  // column of the first local part's K range in x
  const int P = L.parts, pb = L.part_begin();
  const int64_t M = x.dim(0), N = y.dim(1), k0 = tp_part_edge(K, pb, P);
  TpRank::ensure(t.partials, size_t(P * M * N) * dtype_size(y.dtype), ctx_.device);
  Tensor all = t.partials.as(y.dtype, {P, M, N});
  // Each part is an ordinary GEMM over its K slice: the same bits on every rank of every degree.
  for (int j = 0; j < L.part_count(); ++j) {
    const int p = pb + j;
    const int64_t kb = tp_part_edge(K, p, P), ke = tp_part_edge(K, p + 1, P);
    Tensor out = slot(all, p);
    ops::linear(ctx_, columns(x, x0 + kb - k0, ke - kb), parts[size_t(j)], out);
  }
  Tensor mine = slot(all, pb);
  t.comm->all_gather(mine.data, all.data, size_t(L.part_count()) * mine.nbytes(), ctx_.stream);
  ops::sum_partials(ctx_, all, y);  // p0 + p1 + ... + p(P-1), the same order on every rank
}

// model/moe.h's moe_block with the experts cut like the dense MLP: gate/up rows of this rank's
// intermediate columns, down_proj in K parts folded after the gather and before the combine.
void Model::tp_moe_block(const LayerWeights& L, size_t layer, const Tensor& x, Workspace& ws,
                         Tensor& out) {
  TpRank& t = *tp_;
  const io::ModelConfig& c = w_.config;  // the rank's: moe_intermediate_size is local
  const int64_t M = x.dim(0), E = c.num_experts, k = c.num_experts_per_tok;
  const int64_t Il = c.moe_intermediate_size, H = c.hidden_size, Ie = t.full.moe_intermediate_size;
  const DType act = x.dtype;
  Tensor logits = ws.moe.router.as(act, {M, E});
  ops::linear(ctx_, x, L.router, logits);  // replicated router: every rank routes the same
  ops::MoeRouting r;
  r.expert_ids = ws.moe.ids.as(DType::kI32, {M, k});
  r.weights = ws.moe.weights.as(DType::kF32, {M, k});
  r.groups = ws.moe.groups.as(DType::kI32, {ops::moe_groups_len(M * k, E)});
  r.num_experts = E;
  ops::moe_route(ctx_, logits, c.norm_topk_prob, r);
  Tensor gate_up = ws.moe.gate_up.as(act, {M * k, 2 * Il}), h = ws.moe.act.as(act, {M * k, Il});
  ops::moe_linear(ctx_, x, L.experts_gate_up, r, gate_up);
  ops::silu_mul(ctx_, gate_up, h);

  const TpLayout& Ly = t.layout;
  const int P = Ly.parts, pb = Ly.part_begin();
  const int64_t rows = M * k, k0 = tp_part_edge(Ie, pb, P);
  TpRank::ensure(t.partials, size_t(P * rows * H) * dtype_size(act), ctx_.device);
  Tensor all = t.partials.as(act, {P, rows, H});
  for (int j = 0; j < Ly.part_count(); ++j) {
    const int p = pb + j;
    const int64_t kb = tp_part_edge(Ie, p, P), ke = tp_part_edge(Ie, p + 1, P);
    Tensor part = slot(all, p);
    ops::moe_linear(ctx_, columns(h, kb - k0, ke - kb), t.down_parts[layer][size_t(j)], r, part);
  }
  Tensor mine = slot(all, pb);
  t.comm->all_gather(mine.data, all.data, size_t(Ly.part_count()) * mine.nbytes(), ctx_.stream);
  Tensor y = ws.moe.out.as(act, {rows, H});
  ops::sum_partials(ctx_, all, y);
  ops::moe_combine(ctx_, y, r, out);
}

void Model::tp_lm_head(const Tensor& last, Tensor& logits) {
  TpRank& t = *tp_;
  const TpLayout& L = t.layout;
  const int64_t R = last.dim(0), Vr = L.vocab_rows, V = t.full.vocab_size, S = L.size;
  TpRank::ensure(t.gathered, size_t(S * R * Vr) * dtype_size(logits.dtype), ctx_.device);
  Tensor all = t.gathered.as(logits.dtype, {S, R, Vr});
  Tensor mine = slot(all, L.rank);
  // plan_rows = the whole head's rows: on CUDA a vocab shard adds over H in the unsharded order.
  ops::linear(ctx_, last, w_.lm_head, mine, std::max(V, Vr));
  t.comm->all_gather(mine.data, all.data, mine.nbytes(), ctx_.stream);
  for (int64_t s = 0; s < S; ++s) {  // [S, R, Vr] -> [R, V], dropping each shard's padding
    const int64_t vb = std::min(V, s * Vr), ve = std::min(V, (s + 1) * Vr);
    if (ve <= vb) continue;
    Tensor src = columns(slot(all, s), 0, ve - vb);
    Tensor dst = columns(logits, vb, ve - vb);
    ops::copy(ctx_, src, dst);
  }
}

std::unique_ptr<Model> Model::load_tensor_parallel(const std::string& path,
                                                   const ModelOptions& options) {
  const int size = options.tensor_parallel_size;
  if (size != 1 && size != 2 && size != 4 && size != 8)
    fail(ErrorKind::kInvalidArgument,
         "tensor_parallel_size must be 1, 2, 4 or 8, got " + std::to_string(size));
  const bool invariant = options.tp_invariant.value_or(size > 1);
  const int parts = invariant ? kTpParts : size;
  // The host copy (memory-mapped views) that every rank's shard is cut from.
  ModelWeights full = load_weights(path, Device::kCpu, options.dummy_weights);
  auto group = std::make_shared<TpGroup>();
  group->device = options.device;
  ModelOptions rank_options = options;
  rank_options.tensor_parallel_size = 1;
  rank_options.tp_invariant = false;
  rank_options.cuda_graphs = false;  // TP steps upload per-batch ids and grow buffers: eager only
  const int threads = std::max(1, default_thread_pool().size() / size);
  for (int r = 0; r < size; ++r) {
#ifdef BITEXACT_WITH_CUDA
    if (options.device == Device::kCuda) ops::cuda::init_cuda_backend(r);  // the rank's GPU
#endif
    TpLayout layout = make_tp_layout(full.config, r, size, parts);
    TpRankWeights shard = shard_weights(full, layout, options.device);
    auto rank = std::make_unique<Model>(std::move(shard.weights), rank_options);
    auto t = std::make_shared<TpRank>();
    t->layout = layout;
    t->full = full.config;
    t->wo_parts = std::move(shard.wo_parts);
    t->down_parts = std::move(shard.down_parts);
    t->device_index = r;
    if (options.device == Device::kCpu) {
      t->pool = std::make_unique<ThreadPool>(threads);
      rank->ctx_.pool = t->pool.get();
    }
    rank->tp_ = std::move(t);
    group->ranks.push_back(std::move(rank));
  }
#ifdef BITEXACT_WITH_CUDA
  if (options.device == Device::kCuda) ops::cuda::init_cuda_backend(0);
#endif
  group->connect();
  // The front: the full config for the engine (vocab, layers, KV shape), no weights of its own.
  ModelWeights front_weights;
  front_weights.config = full.config;
  auto front = std::make_unique<Model>(std::move(front_weights), options);
  front->group_ = std::move(group);
  return front;
}

}  // namespace bitexact::model
