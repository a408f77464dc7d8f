// Tensor-parallel layouts and the copies that build a rank's weights from the full ones. Only
// copies: a shard holds the checkpoint's values bit for bit, so a rank's GEMMs see exactly the
// rows and columns the unsharded model would.
#include "model/tp_shard.h"

#include <algorithm>
#include <cstring>

#include "ops/ops.h"

namespace bitexact::model {
namespace {

struct Rows {
  int64_t begin, end;
};

// dst[e] = the rows `rows` (concatenated) of src[e], columns [c0, c1), then `pad` zero rows, for
// each leading index e of a rank-3 src (rank 2: one e; rank 1: a row vector). On `device`.
Tensor copy_block(ModelWeights& w, const Tensor& src, const std::vector<Rows>& rows, int64_t c0,
                  int64_t c1, int64_t pad, Device device) {
  BITEXACT_CHECK(src.device == Device::kCpu && src.is_contiguous(),
                 "shard: full weights must be host tensors");
  BITEXACT_CHECK(src.ndim >= 1 && src.ndim <= 3, "shard: weights are rank 1 to 3");
  const int64_t E = src.ndim == 3 ? src.shape[0] : 1;
  const int64_t R = src.ndim == 1 ? 1 : src.shape[src.ndim == 3 ? 1 : 0];
  const int64_t C = src.shape[src.ndim == 3 ? 2 : src.ndim == 2 ? 1 : 0];
  int64_t out_rows = pad;
  for (const Rows& r : rows) {
    BITEXACT_CHECK(0 <= r.begin && r.begin <= r.end && r.end <= R, "shard: row range");
    out_rows += r.end - r.begin;
  }
  BITEXACT_CHECK(0 <= c0 && c0 <= c1 && c1 <= C, "shard: column range");
  const int64_t out_cols = c1 - c0;
  const size_t es = dtype_size(src.dtype);
  Buffer host(std::max<size_t>(1, size_t(E * out_rows * out_cols) * es), Device::kCpu);
  std::memset(host.data(), 0, host.size());
  char* dst = static_cast<char*>(host.data());
  const char* base = static_cast<const char*>(src.data);
  for (int64_t e = 0; e < E; ++e) {
    char* out = dst + size_t(e * out_rows * out_cols) * es;
    for (const Rows& r : rows)
      for (int64_t i = r.begin; i < r.end; ++i, out += size_t(out_cols) * es)
        std::memcpy(out, base + size_t((e * R + i) * C + c0) * es, size_t(out_cols) * es);
  }
  Tensor t;
  if (src.ndim == 3)
    t = host.as(src.dtype, {E, out_rows, out_cols});
  else if (src.ndim == 2)
    t = host.as(src.dtype, {out_rows, out_cols});
  else
    t = host.as(src.dtype, {out_cols});
  if (device == Device::kCpu) {
    w.owned.push_back(std::move(host));
    return t;
  }
  // CUDA: a bf16 copy on the device, converted exactly as the loader converts whole weights.
  w.owned.emplace_back(size_t(t.numel()) * 2, device);
  Tensor d = t;
  d.data = w.owned.back().data();
  d.dtype = DType::kBF16;
  d.device = device;
  ops::ExecContext ctx;
  ctx.device = device;
  Tensor src_flat = t.reshape({t.numel()}), dst_flat = d.reshape({d.numel()});
  ops::copy(ctx, src_flat, dst_flat);
  ops::synchronize(ctx);
  return d;
}

Tensor copy_all(ModelWeights& w, const Tensor& src, Device device) {
  if (!src.data) return Tensor{};
  const int64_t R = src.ndim == 1 ? 1 : src.shape[src.ndim == 3 ? 1 : 0];
  const int64_t C = src.shape[src.ndim == 3 ? 2 : src.ndim == 2 ? 1 : 0];
  return copy_block(w, src, {{0, R}}, 0, C, 0, device);
}

std::string degree_name(int size) { return "tensor_parallel_size " + std::to_string(size); }

}  // namespace

TpLayout make_tp_layout(const io::ModelConfig& c, int rank, int size, int parts) {
  if (size < 1 || parts < size || parts % size != 0)
    fail(ErrorKind::kInvalidArgument, degree_name(size) + " must divide the " +
                                          std::to_string(parts) +
                                          "-part split of row-parallel layers (1, 2, 4 or 8)");
  BITEXACT_CHECK(rank >= 0 && rank < size, "rank out of range");
  const int64_t Dh = c.head_dim, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  const int64_t Ko = Hq * Dh;
  if (Hkv < 1 || Hq % Hkv != 0)
    fail(ErrorKind::kUnsupported, "query heads must be a multiple of KV heads");
  if (Ko < parts || c.intermediate_size < parts ||
      (c.moe_intermediate_size > 0 && c.moe_intermediate_size < parts))
    fail(ErrorKind::kUnsupported, "the model is too small to cut its row-parallel layers into " +
                                      std::to_string(parts) + " parts");
  TpLayout L;
  L.rank = rank;
  L.size = size;
  L.parts = parts;
  const int pb = L.part_begin(), pe = pb + L.part_count();
  // Attention: the heads whose output columns fall in [k_lo, k_hi), widened to whole groups of
  // g query heads so that local query head i still reads local KV head i / g.
  const int64_t k_lo = tp_part_edge(Ko, pb, parts), k_hi = tp_part_edge(Ko, pe, parts);
  const int64_t g = Hq / Hkv;
  L.q_begin = (k_lo / Dh) / g * g;
  L.q_end = ((k_hi - 1) / Dh / g + 1) * g;
  L.kv_begin = L.q_begin / g;
  L.kv_end = L.q_end / g;
  L.o_offset = k_lo - L.q_begin * Dh;
  L.i_begin = tp_part_edge(c.intermediate_size, pb, parts);
  L.i_end = tp_part_edge(c.intermediate_size, pe, parts);
  L.e_begin = tp_part_edge(c.moe_intermediate_size, pb, parts);
  L.e_end = tp_part_edge(c.moe_intermediate_size, pe, parts);
  // Rows per rank rounded up to 8 (CUDA GEMMs want N % 8 == 0); the last shards hold padding.
  L.vocab_rows = ((c.vocab_size + size - 1) / size + 7) / 8 * 8;
  L.v_begin = std::min(c.vocab_size, int64_t(rank) * L.vocab_rows);
  L.v_end = std::min(c.vocab_size, int64_t(rank + 1) * L.vocab_rows);
  return L;
}

TpRankWeights shard_weights(const ModelWeights& full, const TpLayout& L, Device device) {
  const io::ModelConfig& c = full.config;
  const int64_t H = c.hidden_size, Dh = c.head_dim, Hq = c.num_attention_heads,
                Hkv = c.num_key_value_heads;
  const int64_t I = c.intermediate_size, Ie = c.moe_intermediate_size;
  TpRankWeights out;
  out.layout = L;
  ModelWeights& w = out.weights;
  w.config = c;
  w.config.num_attention_heads = L.q_end - L.q_begin;
  w.config.num_key_value_heads = L.kv_end - L.kv_begin;
  w.config.intermediate_size = L.i_end - L.i_begin;
  w.config.moe_intermediate_size = L.e_end - L.e_begin;

  const int64_t v_pad = L.vocab_rows - (L.v_end - L.v_begin);
  w.embed = copy_block(w, full.embed, {{L.v_begin, L.v_end}}, 0, H, v_pad, device);
  w.lm_head = full.lm_head.data == full.embed.data
                  ? w.embed  // tied: one shard serves both
                  : copy_block(w, full.lm_head, {{L.v_begin, L.v_end}}, 0, H, v_pad, device);
  w.final_norm = copy_all(w, full.final_norm, device);

  const int pb = L.part_begin(), pc = L.part_count();
  // K parts [pb, pb + pc) of a [.., N, K] weight, each contiguous.
  auto parts_of = [&](const Tensor& t, int64_t K) {
    std::vector<Tensor> ps;
    const int64_t N = t.shape[t.ndim == 3 ? 1 : 0];
    for (int p = pb; p < pb + pc; ++p)
      ps.push_back(copy_block(w, t, {{0, N}}, tp_part_edge(K, p, L.parts),
                              tp_part_edge(K, p + 1, L.parts), 0, device));
    return ps;
  };
  for (const LayerWeights& f : full.layers) {
    LayerWeights l;
    l.attn_norm = copy_all(w, f.attn_norm, device);
    l.q_norm = copy_all(w, f.q_norm, device);
    l.k_norm = copy_all(w, f.k_norm, device);
    l.mlp_norm = copy_all(w, f.mlp_norm, device);
    l.wqkv = copy_block(w, f.wqkv,
                        {{L.q_begin * Dh, L.q_end * Dh},
                         {(Hq + L.kv_begin) * Dh, (Hq + L.kv_end) * Dh},
                         {(Hq + Hkv + L.kv_begin) * Dh, (Hq + Hkv + L.kv_end) * Dh}},
                        0, H, 0, device);
    out.wo_parts.push_back(parts_of(f.wo, Hq * Dh));
    if (f.is_moe()) {
      l.router = copy_all(w, f.router, device);  // replicated: every rank routes identically
      l.experts_gate_up =
          copy_block(w, f.experts_gate_up, {{L.e_begin, L.e_end}, {Ie + L.e_begin, Ie + L.e_end}},
                     0, H, 0, device);
      out.down_parts.push_back(parts_of(f.experts_down, Ie));
    } else {
      l.w_gate_up = copy_block(w, f.w_gate_up, {{L.i_begin, L.i_end}, {I + L.i_begin, I + L.i_end}},
                               0, H, 0, device);
      out.down_parts.push_back(parts_of(f.w_down, I));
    }
    w.layers.push_back(l);
  }
  return out;
}

}  // namespace bitexact::model
