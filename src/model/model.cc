// The transformer forward pass over the op interface. Activations are f32 on CPU and bf16 on
// CUDA; the residual stream is added and normalised by one fused op per sub-layer.
#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "model/model_internal.h"
#include "model/rope_table.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/attention_control.cuh"
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::model {

int ForwardBatch::max_position() const {
  int m = 0;
  for (int32_t p : positions) m = std::max(m, int(p) + 1);
  return m;
}

Model::Model(ModelWeights weights, const ModelOptions& options)
    : w_(std::move(weights)), options_(options), ws_(std::make_unique<Workspace>()),
      graphs_(std::make_unique<Graphs>()) {
  ctx_.device = options.device;
  ctx_.batch_invariant = options.batch_invariant;
#ifdef BITEXACT_WITH_CUDA
  if (ctx_.device == Device::kCuda) ctx_.stream = ops::cuda::create_stream();  // capturable
#endif
  const io::ModelConfig& c = w_.config;
  const int64_t configured = c.max_position_embeddings > 0 ? c.max_position_embeddings : 4096;
  max_positions_ = options.max_positions > 0 ? options.max_positions
                                             : int(std::min<int64_t>(configured, 32768));
  std::vector<float> table = make_rope_table(c, max_positions_);
  Tensor host = Tensor::view(table.data(), DType::kF32, {max_positions_, c.head_dim});
  rope_buf_ = Buffer(table.size() * 4, ctx_.device);
  rope_ = rope_buf_.as(DType::kF32, {max_positions_, c.head_dim});
  ops::copy(ctx_, host, rope_);
  ops::synchronize(ctx_);
}

Model::~Model() {
#ifdef BITEXACT_WITH_CUDA
  for (auto& [key, exec] : graphs_->execs) ops::cuda::graph_destroy(exec);
  if (ctx_.stream) {
    ops::synchronize(ctx_);
    ops::cuda::destroy_stream(ctx_.stream);
  }
#endif
}

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& options) {
  if (options.tensor_parallel_size != 1 || options.tp_invariant.value_or(false))
    return load_tensor_parallel(path, options);  // tp_model.cc
  return std::make_unique<Model>(load_weights(path, options.device, options.dummy_weights), options);
}

Model::DeviceBatch Model::upload(const ForwardBatch& b, Workspace& ws) {
  auto put = [&](const std::vector<int32_t>& host, Buffer& dev) {
    Tensor h = Tensor::view(const_cast<int32_t*>(host.data()), DType::kI32, {int64_t(host.size())});
    if (ctx_.device == Device::kCpu) return h;  // the host memory itself
    Tensor d = dev.as(DType::kI32, {int64_t(host.size())});
    ops::copy(ctx_, h, d);
    return d;
  };
  DeviceBatch d;
  d.tokens = b.num_tokens();
  d.logit_rows = int(b.logit_rows.size());
  d.max_positions = b.max_position();
  d.ids = put(b.token_ids, ws.ids);
  d.pos = put(b.positions, ws.pos);
  d.seq = put(b.token_seq, ws.seq);
  d.slots = put(b.slots, ws.slots);
  d.table = put(b.block_table, ws.table).reshape({b.num_seqs, b.max_blocks});
  if (d.logit_rows > 0) d.rows = put(b.logit_rows, ws.rows);
  return d;
}

void Model::forward(const ForwardBatch& b, std::span<LayerKv> kv, std::vector<float>& logits,
                    std::vector<float>* logprobs, std::vector<RowTop>* tops) {
  const io::ModelConfig& c = w_.config;
  const int M = b.num_tokens(), R = int(b.logit_rows.size());
  BITEXACT_CHECK(M > 0 && int(b.positions.size()) == M && int(b.slots.size()) == M &&
                     int(b.token_seq.size()) == M && int(kv.size()) == c.num_hidden_layers,
                 "malformed forward batch");
  if (b.max_position() > max_positions_)
    fail(ErrorKind::kInvalidArgument, "position " + std::to_string(b.max_position() - 1) +
                                          " is past the model's maximum of " + std::to_string(max_positions_));
  for (int32_t id : b.token_ids)
    if (id < 0 || id >= c.vocab_size)
      fail(ErrorKind::kInvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                            std::to_string(c.vocab_size) + ")");
  BITEXACT_CHECK(b.row_top_n.empty() || (b.row_top_n.size() == b.logit_rows.size() && logprobs && tops),
                 "row_top_n needs one entry per logit row and the logprobs and tops outputs");
  const Outputs out{logits, logprobs, tops};
  if (group_) return tp_group_forward(b, kv, out);  // tensor-parallel front: the ranks run it
  if (try_graph(b, kv, out)) return;
  ws_->ensure(c, ctx_.device, M, std::max(R, 1), int(b.block_table.size()));  // graphs own theirs
  DeviceBatch d = upload(b, *ws_);
  run(d, kv, *ws_);
  finish_outputs(*ws_, b, R, out);
}

void Model::run(const DeviceBatch& b, std::span<LayerKv> kv, Workspace& ws) {
  const io::ModelConfig& c = w_.config;
  const int M = b.tokens, R = b.logit_rows;
  const DType act = ctx_.device == Device::kCpu ? DType::kF32 : DType::kBF16;
  const int64_t H = c.hidden_size, Dh = c.head_dim, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  const int64_t I = c.intermediate_size, qkv_w = (Hq + 2 * Hkv) * Dh;
  const float eps = float(c.rms_norm_eps);

  ops::AttentionMeta meta;
  meta.token_seq = b.seq;
  meta.token_pos = b.pos;
  meta.block_table = b.table;
  meta.block_size = int(kv[0].k.dim(1));
  meta.max_positions = b.max_positions;

  Tensor resid = ws.resid.as(act, {M, H}), hidden = ws.hidden.as(act, {M, H});
  Tensor qkv = ws.qkv.as(act, {M, qkv_w}), attn = ws.attn.as(act, {M, Hq * Dh});
  Tensor proj = ws.proj.as(act, {M, H}), gate_up = ws.gate_up.as(act, {M, 2 * I});
  Tensor mlp_act = ws.act.as(act, {M, I});
  // Views of q, k, v inside each fused qkv row.
  auto head_view = [&](int64_t offset, int64_t heads) {
    Tensor t = qkv;
    t.data = static_cast<char*>(qkv.data) + size_t(offset) * dtype_size(act);
    t.ndim = 3;
    t.shape = {M, heads, Dh, 0};
    t.stride = {qkv_w, Dh, 1, 0};
    return t;
  };
  Tensor q = head_view(0, Hq), k = head_view(Hq * Dh, Hkv), v = head_view((Hq + Hkv) * Dh, Hkv);
  Tensor attn3 = attn.reshape({M, Hq, Dh});
  const float scale = 1.0f / std::sqrt(float(Dh));

  // The norm in front of a projection stays pending (hidden = norm(resid (+ add)) not yet made)
  // until the projection runs. At decode sizes the projection's GEMM makes it (ops::norm_linear:
  // one kernel instead of two on the step's critical path, the same bits); its CTAs all read the
  // residual stream while CTA 0 writes the new one, so the stream then alternates between two
  // buffers. Elsewhere the norm is its own op, in place, as before.
  const bool fuse = !tp_ && ops::norm_linear_fuses(ctx_, M, H);
  Tensor resid_alt = fuse ? ws.resid_alt.as(act, {M, H}) : resid;
  Tensor *cur = &resid, *alt = &resid_alt;
  const Tensor* pending_add = nullptr;   // added to the residual stream first (or none)
  const Tensor* pending_norm = nullptr;  // the norm weight; null: hidden is ready
  auto settle = [&] {  // hidden = the pending norm, as its own op
    if (pending_norm == nullptr) return;
    if (pending_add) ops::add_rms_norm(ctx_, *cur, *pending_add, *pending_norm, eps, hidden);
    else ops::rms_norm(ctx_, *cur, *pending_norm, eps, hidden);
    pending_norm = nullptr;
  };
  auto project = [&](const Tensor& w, Tensor& y, int64_t plan_rows) {  // y = linear(hidden, w)
    if (fuse && pending_norm != nullptr) {
      ops::norm_linear(ctx_, *cur, pending_add, *pending_norm, eps, pending_add ? alt : nullptr, w, y, hidden);
      if (pending_add) std::swap(cur, alt);
      pending_norm = nullptr;
      return;
    }
    settle();
    ops::linear(ctx_, hidden, w, y, plan_rows);
  };

  if (tp_) tp_embed(b, resid);  // vocab-parallel: rows gathered from their owners
  else ops::embedding(ctx_, w_.embed, b.ids, resid);
  pending_norm = &w_.layers[0].attn_norm;
  for (size_t l = 0; l < w_.layers.size(); ++l) {
    const LayerWeights& L = w_.layers[l];
    project(L.wqkv, qkv, tp_plan_rows(TpColumn::kQkv));
    // q, k = rope(norm(q, k)) in place (qwen3's q/k norm; llama has none), k and v into the
    // caches: one kernel on CUDA, the bits of the five ops.
    const bool qk_norm = L.q_norm.data != nullptr;
    ops::qk_norm_rope_kv_write(ctx_, q, k, v, qk_norm ? &L.q_norm : nullptr,
                               qk_norm ? &L.k_norm : nullptr, eps, b.pos, rope_,
                               c.rope_interleaved, b.slots, kv[l].k, kv[l].v);
    ops::attention(ctx_, q, kv[l].k, kv[l].v, meta, scale, attn3);
    if (tp_) tp_row_parallel(attn, l, false, proj);  // 8 fixed K parts, gathered, folded
    else ops::linear(ctx_, attn, L.wo, proj);
    pending_add = &proj;
    pending_norm = &L.mlp_norm;
    const Tensor& next_norm = l + 1 < w_.layers.size() ? w_.layers[l + 1].attn_norm : w_.final_norm;
    if (L.is_moe() && !tp_) {
      // qwen3_moe sparse layer (model/moe.cc); its combine also adds to resid and applies
      // next_norm (one op with the bits of moe_combine then add_rms_norm)
      settle();
      moe_block_add_rms_norm(ctx_, c, L, hidden, ws.moe, *cur, next_norm, eps, hidden);
      continue;
    }
    if (L.is_moe()) {
      settle();
      tp_moe_block(L, l, hidden, ws, proj);  // experts split like the dense MLP
    } else {
      project(L.w_gate_up, gate_up, tp_plan_rows(TpColumn::kGateUp));
      if (tp_) {
        ops::silu_mul(ctx_, gate_up, mlp_act);
        tp_row_parallel(mlp_act, l, true, proj);
      } else {
        ops::swiglu_linear(ctx_, gate_up, L.w_down, proj, mlp_act);  // one kernel at decode sizes
      }
    }
    pending_add = &proj;
    pending_norm = &next_norm;
  }
  settle();  // the final norm
  if (R == 0) return;
  Tensor last = ws.last.as(act, {R, H});
  ops::gather_rows(ctx_, hidden, b.rows, last);
  Tensor out = ws.logits.as(act, {R, c.vocab_size});
  if (tp_) tp_lm_head(last, out);  // vocab shards, gathered to full rows
  else ops::linear(ctx_, last, w_.lm_head, out);
}

}  // namespace bitexact::model
