// Weight loading for llama, qwen3 and qwen3_moe from Hugging Face safetensors folders and GGUF
// files: name mapping, shape and dtype checks, q/k/v, gate/up and expert fusion, and upload to
// the device.
#include "model/weights.h"

#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace bitexact::model {
namespace {

namespace fs = std::filesystem;
using Lookup = std::function<std::optional<Tensor>(const std::string&)>;

// Canonical (Hugging Face) names; GGUF names are derived from them.
std::string gguf_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  const std::string prefix = "model.layers.";
  size_t dot = hf.find('.', prefix.size());
  std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  std::string rest = hf.substr(dot + 1);
  for (auto& [from, to] : kLayer)
    if (rest == from) return "blk." + layer + "." + to;
  return hf;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

class Loader {
 public:
  Loader(Lookup lookup, ModelWeights& w, Device device) : lookup_(std::move(lookup)), w_(w), device_(device) {}
  // Dummy weights: no lookup; every tensor is made on the device from its name.
  Loader(ModelWeights& w, Device device) : w_(w), device_(device), dummy_(true) {}

  // The named tensor, checked against the expected shape.
  Tensor get(const std::string& name, std::initializer_list<int64_t> shape) {
    if (dummy_) return make_dummy(name, shape);
    std::optional<Tensor> t = lookup_(name);
    if (!t) fail(ErrorKind::kFormat, "checkpoint is missing tensor `" + name + "`");
    check_shape(name, *t, shape);
    return place(*t);
  }
  std::optional<Tensor> get_optional(const std::string& name, std::initializer_list<int64_t> shape) {
    if (dummy_) return make_dummy(name, shape);
    if (!lookup_(name)) return std::nullopt;
    return get(name, shape);
  }
  // Rows of several [r_i, K] tensors stacked into one [sum r_i, K] tensor.
  Tensor fused(const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols) {
    if (dummy_) {
      int64_t rows = 0;
      for (auto& p : parts) rows += p.second;
      return make_dummy(parts[0].first, {rows, cols});
    }
    std::vector<Tensor> ts;
    int64_t rows = 0;
    for (auto& [name, r] : parts) {
      std::optional<Tensor> t = lookup_(name);
      if (!t) fail(ErrorKind::kFormat, "checkpoint is missing tensor `" + name + "`");
      check_shape(name, *t, {r, cols});
      if (!ts.empty() && t->dtype != ts[0].dtype)
        fail(ErrorKind::kFormat, "tensor `" + name + "` has dtype " + std::string(dtype_name(t->dtype)) +
                                     " unlike the tensors it is fused with");
      ts.push_back(*t);
      rows += r;
    }
    Buffer host(size_t(rows * cols) * dtype_size(ts[0].dtype), Device::kCpu);
    char* dst = static_cast<char*>(host.data());
    for (const Tensor& t : ts) {
      std::memcpy(dst, t.data, t.nbytes());
      dst += t.nbytes();
    }
    Tensor placed = place(host.as(ts[0].dtype, {rows, cols}));
    // CUDA keeps only its device copy: the host staging of fused experts can be gigabytes.
    if (device_ == Device::kCpu) w_.owned.push_back(std::move(host));
    return placed;
  }

 private:
  static void check_shape(const std::string& name, const Tensor& t, std::initializer_list<int64_t> shape) {
    bool ok = t.ndim == int(shape.size());
    int i = 0;
    for (int64_t s : shape) ok = ok && t.shape[i++] == s;
    if (!ok) {
      Tensor want = Tensor::view(nullptr, t.dtype, shape);
      fail(ErrorKind::kFormat, "tensor `" + name + "` has shape " + t.shape_str() + ", expected " +
                                   want.shape_str() + " from config.json");
    }
    if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16)
      fail(ErrorKind::kUnsupported, "tensor `" + name + "` has dtype " + std::string(dtype_name(t.dtype)));
  }
  // CPU: the view as is. CUDA: a bf16 copy on the device (the CUDA kernels read bf16 weights).
  Tensor place(const Tensor& t) {
    if (device_ == Device::kCpu) return t;
    ops::ExecContext ctx;
    ctx.device = Device::kCuda;
    w_.owned.emplace_back(size_t(t.numel()) * 2, Device::kCuda);
    Tensor d = t;
    d.data = w_.owned.back().data();
    d.dtype = DType::kBF16;
    d.device = Device::kCuda;
    ops::copy(ctx, t, d);
    ops::synchronize(ctx);
    return d;
  }

  // Norm weights near 1, matrices with std 0.02 (uniform): activations stay finite at any depth.
  Tensor make_dummy(const std::string& name, std::initializer_list<int64_t> shape) {
    Tensor t = Tensor::view(nullptr, DType::kBF16, shape, device_);
    w_.owned.emplace_back(t.nbytes(), device_);
    t.data = w_.owned.back().data();
    const bool norm = shape.size() == 1;
    ops::ExecContext ctx;
    ctx.device = device_;
    ops::fill_uniform(ctx, t, fnv1a(name), norm ? 0.05f : 0.0346f, norm ? 1.0f : 0.0f);
    return t;
  }

  Lookup lookup_;
  ModelWeights& w_;
  Device device_;
  bool dummy_ = false;
};

// A qwen3_moe sparse block: router [E, H], every expert's gate and up rows stacked into
// [E, 2 I_moe, H] (expert e: gate then up, as transformers' fused gate_up_proj) and the down
// projections into [E, H, I_moe].
void load_experts(Loader& L, const io::ModelConfig& c, const std::string& p, LayerWeights& lw) {
  const int64_t H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size;
  lw.router = L.get(p + "mlp.gate.weight", {E, H});
  std::vector<std::pair<std::string, int64_t>> gate_up, down;
  for (int64_t e = 0; e < E; ++e) {
    const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
    gate_up.push_back({x + "gate_proj.weight", I});
    gate_up.push_back({x + "up_proj.weight", I});
    down.push_back({x + "down_proj.weight", H});
  }
  lw.experts_gate_up = L.fused(gate_up, H).reshape({E, 2 * I, H});
  lw.experts_down = L.fused(down, I).reshape({E, H, I});
}

void load_layers(Loader& L, ModelWeights& w) {
  const io::ModelConfig& c = w.config;
  const int64_t H = c.hidden_size, Dh = c.head_dim, I = c.intermediate_size;
  const int64_t q_rows = c.num_attention_heads * Dh, kv_rows = c.num_key_value_heads * Dh;
  const bool qk_norm = c.arch == io::Architecture::kQwen3 || c.arch == io::Architecture::kQwen3Moe;
  w.embed = L.get("model.embed_tokens.weight", {c.vocab_size, H});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights lw;
    lw.attn_norm = L.get(p + "input_layernorm.weight", {H});
    lw.wqkv = L.fused({{p + "self_attn.q_proj.weight", q_rows},
                       {p + "self_attn.k_proj.weight", kv_rows},
                       {p + "self_attn.v_proj.weight", kv_rows}}, H);
    if (qk_norm) {
      lw.q_norm = L.get(p + "self_attn.q_norm.weight", {Dh});
      lw.k_norm = L.get(p + "self_attn.k_norm.weight", {Dh});
    }
    lw.wo = L.get(p + "self_attn.o_proj.weight", {H, q_rows});
    lw.mlp_norm = L.get(p + "post_attention_layernorm.weight", {H});
    if (is_sparse_layer(c, i)) {
      load_experts(L, c, p, lw);
    } else {
      lw.w_gate_up = L.fused({{p + "mlp.gate_proj.weight", I}, {p + "mlp.up_proj.weight", I}}, H);
      lw.w_down = L.get(p + "mlp.down_proj.weight", {H, I});
    }
    w.layers.push_back(lw);
  }
  w.final_norm = L.get("model.norm.weight", {H});
  std::optional<Tensor> head = c.tie_word_embeddings ? std::nullopt
                                                      : L.get_optional("lm_head.weight", {c.vocab_size, H});
  if (!head && !c.tie_word_embeddings)
    fail(ErrorKind::kFormat, "checkpoint has no `lm_head.weight` and config.json does not tie embeddings");
  w.lm_head = head ? *head : w.embed;
}

void check_supported(const io::ModelConfig& c) {
  if (c.attention_bias) fail(ErrorKind::kUnsupported, "attention_bias = true is not supported");
}

}  // namespace

bool is_sparse_layer(const io::ModelConfig& c, int64_t layer) {
  if (c.arch != io::Architecture::kQwen3Moe || c.num_experts <= 0) return false;
  for (int64_t l : c.mlp_only_layers)
    if (l == layer) return false;
  return (layer + 1) % c.decoder_sparse_step == 0;
}

ModelWeights load_weights(const std::string& path, Device device, bool dummy) {
  ModelWeights w;
  if (dummy) {
    fs::path config = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
    w.config = io::load_model_config(config.string());
    check_supported(w.config);
    Loader loader(w, device);
    load_layers(loader, w);
    ops::ExecContext ctx;
    ctx.device = device;
    ops::synchronize(ctx);
    return w;
  }
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") {
    auto gguf = std::make_shared<io::GgufFile>(io::GgufFile::open(path));
    w.config = io::model_config_from_gguf(*gguf);
    check_supported(w.config);
    w.keep_alive.push_back(gguf);
    Loader loader([gguf](const std::string& name) -> std::optional<Tensor> {
      const io::GgufTensorInfo* info = gguf->find_tensor(gguf_name(name));
      if (!info) return std::nullopt;
      return gguf->tensor(*info);
    }, w, device);
    load_layers(loader, w);
    return w;
  }
  if (!fs::is_directory(path))
    fail(ErrorKind::kIo, "model path `" + path + "` is neither a .gguf file nor a folder");
  w.config = io::load_model_config((fs::path(path) / "config.json").string());
  check_supported(w.config);
  auto ckpt = std::make_shared<io::SafetensorsCheckpoint>(io::SafetensorsCheckpoint::open(path));
  w.keep_alive.push_back(ckpt);
  Loader loader([ckpt](const std::string& name) -> std::optional<Tensor> {
    if (!ckpt->find(name)) return std::nullopt;
    return ckpt->tensor(name);
  }, w, device);
  load_layers(loader, w);
  return w;
}

ModelWeights load_weights_with(const io::ModelConfig& config, const TensorLookup& lookup,
                               Device device) {
  ModelWeights w;
  w.config = config;
  check_supported(w.config);
  Loader loader(lookup, w, device);
  load_layers(loader, w);
  return w;
}

}  // namespace bitexact::model
