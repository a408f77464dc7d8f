// Model weights in the layout the forward pass uses: q/k/v fused into one [Hq+2Hkv)*Dh, H]
// matrix and gate/up into one [2I, H] matrix, so each is one GEMM. On CPU, unfused tensors are
// views into the memory-mapped checkpoint; on CUDA every weight is a bf16 copy on the device.
#pragma once

#include <memory>
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
  Tensor w_gate_up;  // [2 I, H]
  Tensor w_down;     // [H, I]
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

// Loads a Hugging Face folder (config.json + safetensors) or a .gguf file. Every tensor's
// presence, dtype and shape is checked, with the tensor named in the error. With `dummy`, only
// config.json is read and every weight is bf16 Philox noise (vLLM's `--load-format dummy`):
// full-size shapes for benchmarks without the checkpoint.
ModelWeights load_weights(const std::string& path, Device device, bool dummy = false);

}  // namespace bitexact::model
