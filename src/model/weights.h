// Model weights in the layout the forward pass uses: q/k/v fused into one [Hq+2Hkv)*Dh, H]
// matrix and gate/up into one [2I, H] matrix (MoE experts: [E, 2I, H]), so each is one GEMM. On
// CPU, unfused tensors are views into the memory-mapped checkpoint; on CUDA every weight is a
// bf16 copy on the device.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace bitexact::model {

struct LayerWeights {
  Tensor attn_norm;  // [H]
  Tensor wqkv;       // [(Hq + 2 Hkv) * Dh, H]
  Tensor q_norm;     // [Dh] (qwen3; empty for llama)
  Tensor k_norm;     // [Dh]
  Tensor wo;         // [H, Hq * Dh]
  Tensor mlp_norm;   // [H]
  Tensor w_gate_up;  // [2 I, H] (dense MLP layers)
  Tensor w_down;     // [H, I]
  // qwen3_moe sparse layers (the dense pair above is empty there). Experts fused per layer so
  // one grouped GEMM reads any expert: per expert the gate rows, then the up rows.
  Tensor router;           // [E, H] (mlp.gate)
  Tensor experts_gate_up;  // [E, 2 I_moe, H]
  Tensor experts_down;     // [E, H, I_moe]
  bool is_moe() const { return router.data != nullptr; }
};

struct ModelWeights {
  io::ModelConfig config;
  Tensor embed;       // [V, H]
  Tensor final_norm;  // [H]
  Tensor lm_head;     // [V, H] (the embedding when tied)
  std::vector<LayerWeights> layers;
  // Keeps mapped files and owned buffers alive as long as the views above.
  std::vector<std::shared_ptr<void>> keep_alive;
  std::vector<Buffer> owned;
};

// qwen3_moe: whether `layer` has the sparse expert block (else the dense MLP), as transformers'
// Qwen3MoeDecoderLayer decides: not in mlp_only_layers and (layer + 1) % decoder_sparse_step == 0.
bool is_sparse_layer(const io::ModelConfig& c, int64_t layer);

// Loads a Hugging Face folder (config.json + safetensors) or a .gguf file. Every tensor's
// presence, dtype and shape is checked, with the tensor named in the error. With `dummy`, only
// config.json is read and every weight is bf16 Philox noise (vLLM's `--load-format dummy`):
// full-size shapes for benchmarks without the checkpoint.
ModelWeights load_weights(const std::string& path, Device device, bool dummy = false);

// A tensor by its Hugging Face name; nullopt when the checkpoint has none.
using TensorLookup = std::function<std::optional<Tensor>(const std::string&)>;
// The weights of `config` read through `lookup`, with load_weights' checks (weight updates:
// model/weight_update.h).
ModelWeights load_weights_with(const io::ModelConfig& config, const TensorLookup& lookup,
                               Device device);

}  // namespace bitexact::model
