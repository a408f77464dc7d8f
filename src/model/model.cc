// The transformer forward pass over the op interface. Activations are f32 on CPU and bf16 on
// CUDA; the residual stream is added and normalised by one fused op per sub-layer.
#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "model/rope_table.h"

namespace bitexact::model {

int ForwardBatch::max_position() const {
  int m = 0;
  for (int32_t p : positions) m = std::max(m, int(p) + 1);
  return m;
}

// Activation buffers sized for the largest batch seen so far (grown, never shrunk).
struct Model::Workspace {
  int tokens = 0, logit_rows = 0, table_len = 0;
  Buffer resid, hidden, qkv, attn, proj, gate_up, act, last, logits;
  Buffer ids, pos, seq, slots, table, rows;  // device copies of the batch metadata
};

Model::Model(ModelWeights weights, const ModelOptions& options)
    : w_(std::move(weights)), ws_(std::make_unique<Workspace>()) {
  ctx_.device = options.device;
  ctx_.batch_invariant = options.batch_invariant;
  const io::ModelConfig& c = w_.config;
  max_positions_ = options.max_positions > 0
                       ? options.max_positions
                       : int(std::min<int64_t>(c.max_position_embeddings > 0 ? c.max_position_embeddings : 4096, 32768));
  std::vector<float> table = make_rope_table(c, max_positions_);
  Tensor host = Tensor::view(table.data(), DType::kF32, {max_positions_, c.head_dim});
  rope_buf_ = Buffer(table.size() * 4, ctx_.device);
  rope_ = rope_buf_.as(DType::kF32, {max_positions_, c.head_dim});
  ops::copy(ctx_, host, rope_);
  ops::synchronize(ctx_);
}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& options) {
  return std::make_unique<Model>(load_weights(path, options.device), options);
}

void Model::ensure_workspace(int tokens, int logit_rows, int table_len) {
  Workspace& ws = *ws_;
  const io::ModelConfig& c = w_.config;
  const DType act = ctx_.device == Device::kCpu ? DType::kF32 : DType::kBF16;
  const size_t es = dtype_size(act);
  if (tokens > ws.tokens) {
    const int64_t qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
    const int64_t width = std::max({c.hidden_size, c.num_attention_heads * c.head_dim});
    ws.resid = Buffer(size_t(tokens) * c.hidden_size * es, ctx_.device);
    ws.hidden = Buffer(size_t(tokens) * c.hidden_size * es, ctx_.device);
    ws.qkv = Buffer(size_t(tokens) * qkv * es, ctx_.device);
    ws.attn = Buffer(size_t(tokens) * width * es, ctx_.device);
    ws.proj = Buffer(size_t(tokens) * c.hidden_size * es, ctx_.device);
    ws.gate_up = Buffer(size_t(tokens) * 2 * c.intermediate_size * es, ctx_.device);
    ws.act = Buffer(size_t(tokens) * c.intermediate_size * es, ctx_.device);
    for (Buffer* b : {&ws.ids, &ws.pos, &ws.seq, &ws.slots}) *b = Buffer(size_t(tokens) * 4, ctx_.device);
    ws.tokens = tokens;
  }
  if (logit_rows > ws.logit_rows) {
    ws.last = Buffer(size_t(logit_rows) * c.hidden_size * es, ctx_.device);
    ws.logits = Buffer(size_t(logit_rows) * c.vocab_size * es, ctx_.device);
    ws.rows = Buffer(size_t(logit_rows) * 4, ctx_.device);
    ws.logit_rows = logit_rows;
  }
  if (table_len > ws.table_len) {
    ws.table = Buffer(size_t(table_len) * 4, ctx_.device);
    ws.table_len = table_len;
  }
}

// A device view of host ints: the host memory itself on CPU, a copy on CUDA.
Tensor Model::upload_i32(const std::vector<int32_t>& host, Buffer& dev, int64_t n) {
  Tensor h = Tensor::view(const_cast<int32_t*>(host.data()), DType::kI32, {n});
  if (ctx_.device == Device::kCpu) return h;
  Tensor d = dev.as(DType::kI32, {n});
  ops::copy(ctx_, h, d);
  return d;
}

void Model::forward(const ForwardBatch& b, std::span<LayerKv> kv, std::vector<float>& logits) {
  const io::ModelConfig& c = w_.config;
  const int M = b.num_tokens(), R = int(b.logit_rows.size());
  BITEXACT_CHECK(M > 0 && int(b.positions.size()) == M && int(b.slots.size()) == M, "bad batch");
  if (b.max_position() > max_positions_)
    fail(ErrorKind::kInvalidArgument, "position " + std::to_string(b.max_position() - 1) +
                                          " is past the model's maximum of " + std::to_string(max_positions_));
  for (int32_t id : b.token_ids)
    if (id < 0 || id >= c.vocab_size)
      fail(ErrorKind::kInvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                            std::to_string(c.vocab_size) + ")");
  ensure_workspace(M, std::max(R, 1), int(b.block_table.size()));
  Workspace& ws = *ws_;
  const DType act = ctx_.device == Device::kCpu ? DType::kF32 : DType::kBF16;
  const int64_t H = c.hidden_size, Dh = c.head_dim, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  const int64_t I = c.intermediate_size, qkv_w = (Hq + 2 * Hkv) * Dh;
  const float eps = float(c.rms_norm_eps);

  Tensor ids = upload_i32(b.token_ids, ws.ids, M);
  Tensor pos = upload_i32(b.positions, ws.pos, M);
  ops::AttentionMeta meta;
  meta.token_seq = upload_i32(b.token_seq, ws.seq, M);
  meta.token_pos = pos;
  Tensor table_flat = upload_i32(b.block_table, ws.table, int64_t(b.block_table.size()));
  meta.block_table = table_flat.reshape({b.num_seqs, b.max_blocks});
  meta.block_size = int(kv[0].k.dim(1));
  meta.max_positions = b.max_position();
  Tensor slots = upload_i32(b.slots, ws.slots, M);

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

  ops::embedding(ctx_, w_.embed, ids, resid);
  ops::rms_norm(ctx_, resid, w_.layers[0].attn_norm, eps, hidden);
  for (size_t l = 0; l < w_.layers.size(); ++l) {
    const LayerWeights& L = w_.layers[l];
    ops::linear(ctx_, hidden, L.wqkv, qkv);
    if (L.q_norm.data) {
      ops::rms_norm(ctx_, q, L.q_norm, eps, q);
      ops::rms_norm(ctx_, k, L.k_norm, eps, k);
    }
    ops::rope(ctx_, q, pos, rope_, c.rope_interleaved);
    ops::rope(ctx_, k, pos, rope_, c.rope_interleaved);
    ops::kv_cache_write(ctx_, k, v, slots, kv[l].k, kv[l].v);
    ops::attention(ctx_, q, kv[l].k, kv[l].v, meta, scale, attn3);
    ops::linear(ctx_, attn, L.wo, proj);
    ops::add_rms_norm(ctx_, resid, proj, L.mlp_norm, eps, hidden);
    ops::linear(ctx_, hidden, L.w_gate_up, gate_up);
    ops::silu_mul(ctx_, gate_up, mlp_act);
    ops::linear(ctx_, mlp_act, L.w_down, proj);
    const Tensor& next_norm = l + 1 < w_.layers.size() ? w_.layers[l + 1].attn_norm : w_.final_norm;
    ops::add_rms_norm(ctx_, resid, proj, next_norm, eps, hidden);
  }
  logits.resize(size_t(R) * size_t(c.vocab_size));
  if (R == 0) return;
  Tensor rows = upload_i32(b.logit_rows, ws.rows, R);
  Tensor last = ws.last.as(act, {R, H});
  ops::gather_rows(ctx_, hidden, rows, last);
  Tensor out = ws.logits.as(act, {R, c.vocab_size});
  ops::linear(ctx_, last, w_.lm_head, out);
  Tensor host = Tensor::view(logits.data(), DType::kF32, {R, c.vocab_size});
  ops::copy(ctx_, out, host);
  ops::synchronize(ctx_);
}

}  // namespace bitexact::model
