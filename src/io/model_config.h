// Model hyper-parameters, from a Hugging Face config.json (qwen3, qwen3_moe, llama) or from GGUF
// metadata, and generation defaults from generation_config.json. Parsing validates every field
// it uses and names the file and field in its errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace bitexact::io {

enum class Architecture { kLlama, kQwen3, kQwen3Moe };
const char* architecture_name(Architecture a);

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear", "yarn"...; unknown types are rejected
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // defaults to hidden_size / num_attention_heads when absent
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (rejected for now if true)
  DType torch_dtype = DType::kBF16;
  // GGUF llama files store q/k rows for interleaved-pair rotary; HF checkpoints for half split.
  bool rope_interleaved = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  // qwen3_moe (parsed for all; used when arch == kQwen3Moe)
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
};

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
  std::optional<double> temperature, top_p, min_p;
  std::optional<int64_t> top_k;
  std::optional<double> repetition_penalty;
};

// Parses config.json text; `source` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
ModelConfig load_model_config(const std::string& path);
GenerationConfig parse_generation_config(const std::string& json_text, const std::string& source);
// Absent file -> empty config (it is optional in a checkpoint); malformed -> Error.
GenerationConfig load_generation_config(const std::string& path);

class GgufFile;
// Hyper-parameters of a GGUF file's `llama` or `qwen3` architecture (general.architecture).
ModelConfig model_config_from_gguf(const GgufFile& gguf);

}  // namespace bitexact::io
