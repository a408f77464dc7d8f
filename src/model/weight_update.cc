// Weight updates: load_weight_update reads a checkpoint with the model's own config, and
// Model::check_replacement / replace_weights compare every tensor's dtype and shape and swap.
#include "model/weight_update.h"

#include <cstring>
#include <map>
#include <set>

#include "io/safetensors.h"
#include "model/model.h"
#include "model/model_internal.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::model {

ModelWeights load_weight_update(const std::string& dir, const io::ModelConfig& config,
                                Device device) {
  auto ckpt = std::make_shared<io::SafetensorsCheckpoint>(io::SafetensorsCheckpoint::open(dir));
  // On CPU the loader keeps views of what the lookup returns: give it copies, not the mapping,
  // so that a trainer rewriting these files cannot change (or truncate) weights in use. On CUDA
  // the loader uploads copies itself.
  auto copies = std::make_shared<std::map<std::string, Buffer>>();
  std::set<std::string> used;
  TensorLookup lookup = [&](const std::string& name) -> std::optional<Tensor> {
    if (!ckpt->find(name)) return std::nullopt;
    used.insert(name);
    Tensor t = ckpt->tensor(name);
    if (device != Device::kCpu) return t;
    auto it = copies->find(name);
    if (it == copies->end()) {
      it = copies->emplace(name, Buffer(t.nbytes(), Device::kCpu)).first;
      std::memcpy(it->second.data(), t.data, t.nbytes());
    }
    t.data = it->second.data();
    return t;
  };
  ModelWeights w = load_weights_with(config, lookup, device);
  for (const auto& [name, entry] : ckpt->tensors())
    if (!used.count(name))
      fail(ErrorKind::kFormat,
           "weight update: tensor `" + name + "` (in " + entry.file +
               ") is not a weight of this model; the names must be the model's own");
  w.keep_alive.push_back(copies);
  return w;
}

namespace {

// The model's tensors, named, in a fixed order; `b` is walked alongside `a`. A tensor missing
// here is still swapped and its shape checked by the loader; only its dtype goes unchecked.
template <typename F>
void for_each_pair(const ModelWeights& a, const ModelWeights& b, F&& f) {
  f("embed", a.embed, b.embed);
  f("final_norm", a.final_norm, b.final_norm);
  f("lm_head", a.lm_head, b.lm_head);
  for (size_t l = 0; l < a.layers.size() && l < b.layers.size(); ++l) {
    const LayerWeights &x = a.layers[l], &y = b.layers[l];
    const std::string p = "layer " + std::to_string(l) + " ";
    f(p + "attn_norm", x.attn_norm, y.attn_norm);
    f(p + "qkv", x.wqkv, y.wqkv);
    f(p + "q_norm", x.q_norm, y.q_norm);
    f(p + "k_norm", x.k_norm, y.k_norm);
    f(p + "o_proj", x.wo, y.wo);
    f(p + "mlp_norm", x.mlp_norm, y.mlp_norm);
    f(p + "gate_up", x.w_gate_up, y.w_gate_up);
    f(p + "down", x.w_down, y.w_down);
    f(p + "router", x.router, y.router);
    f(p + "experts_gate_up", x.experts_gate_up, y.experts_gate_up);
    f(p + "experts_down", x.experts_down, y.experts_down);
  }
}

}  // namespace

void Model::check_replacement(const ModelWeights& w) const {
  auto bad = [](const std::string& m) { fail(ErrorKind::kInvalidArgument, "weight update: " + m); };
  if (group_ || tp_)  // each rank holds slices: an update would have to be re-sharded (tp_shard.h)
    fail(ErrorKind::kUnsupported, "weight update: not supported for tensor-parallel models yet");
  if (w.layers.size() != w_.layers.size())
    bad("the new weights have " + std::to_string(w.layers.size()) + " layers, the model " +
        std::to_string(w_.layers.size()));
  for_each_pair(w_, w, [&](const std::string& name, const Tensor& cur, const Tensor& nw) {
    if ((cur.data == nullptr) != (nw.data == nullptr))
      bad("tensor " + name + " is present in only one of the two");
    if (!cur.data) return;
    if (cur.dtype != nw.dtype)
      bad("tensor " + name + " has dtype " + std::string(dtype_name(nw.dtype)) +
          ", the model's is " + std::string(dtype_name(cur.dtype)) +
          " (a different dtype would change every result)");
    if (cur.shape_str() != nw.shape_str() || cur.device != nw.device)
      bad("tensor " + name + " has shape " + nw.shape_str() + ", the model's is " +
          cur.shape_str());
  });
}

void Model::replace_weights(ModelWeights w) {
  check_replacement(w);
  ops::synchronize(ctx_);  // no kernel may still read the old weights when they are freed
#ifdef BITEXACT_WITH_CUDA
  for (auto& [key, exec] : graphs_->execs)
    ops::cuda::graph_destroy(exec);  // they hold raw weight pointers
  graphs_->execs.clear();
#endif
  w.config = w_.config;  // the same values; references to config() stay valid
  std::swap(w_, w);
}  // the old weights are freed here

}  // namespace bitexact::model
