// Hugging Face config.json and generation_config.json parsing for llama, qwen3 and qwen3_moe.
// Every field the engine uses is type-checked and range-checked here, and options that would make
// the model compute something else (sliding window, other rope scalings) are rejected by name.
#include "io/model_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/config_fields.h"
#include "io/io_util.h"

namespace bitexact::io {

using detail::Fields;
using nlohmann::json;

const char* architecture_name(Architecture a) {
  switch (a) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kQwen3:
      return "qwen3";
    case Architecture::kQwen3Moe:
      return "qwen3_moe";
  }
  return "?";
}

namespace {

Architecture parse_architecture(const Fields& f) {
  std::string name;
  if (f.get("model_type")) {
    name = f.string_field("model_type");
  } else if (const json* a = f.get("architectures");
             a && a->is_array() && !a->empty() && (*a)[0].is_string()) {
    const std::string cls = (*a)[0].get<std::string>();
    name = cls == "LlamaForCausalLM"      ? "llama"
           : cls == "Qwen3ForCausalLM"    ? "qwen3"
           : cls == "Qwen3MoeForCausalLM" ? "qwen3_moe"
                                          : cls;
  } else {
    f.bad("model_type", "a string naming the architecture (and `architectures` is absent too)");
  }
  if (name == "llama") return Architecture::kLlama;
  if (name == "qwen3") return Architecture::kQwen3;
  if (name == "qwen3_moe") return Architecture::kQwen3Moe;
  fail(ErrorKind::kUnsupported,
       f.source() + ": unknown architecture " + name + "; supported: llama, qwen3, qwen3_moe");
}

DType parse_torch_dtype(const Fields& f) {
  const char* key = f.get("dtype") ? "dtype" : "torch_dtype";
  if (!f.get(key)) return DType::kBF16;
  const std::string s = f.string_field(key);
  if (s == "float32") return DType::kF32;
  if (s == "bfloat16") return DType::kBF16;
  if (s == "float16") return DType::kF16;
  fail(ErrorKind::kUnsupported,
       f.source() + ": field `" + key + "` is `" + s + "`; supported: float32, bfloat16, float16");
}

// rope_scaling (older transformers) or rope_parameters (newer, which also carries rope_theta).
RopeScaling parse_rope_scaling(const Fields& f) {
  RopeScaling rs;
  const char* key = f.get("rope_scaling") ? "rope_scaling" : "rope_parameters";
  const json* j = f.get(key);
  if (!j) return rs;
  if (!j->is_object()) f.bad(key, "an object or null");
  Fields r(*j, f.source(), key);
  std::string type = r.get("rope_type") ? r.string_field("rope_type")
                     : r.get("type")    ? r.string_field("type")
                                        : "default";
  if (type == "default") return rs;
  if (type != "llama3") {
    fail(ErrorKind::kUnsupported, f.source() + ": " + key + " type `" + type +
                                      "` is not supported (supported: default, llama3)");
  }
  rs.type = type;
  rs.factor = r.positive_number("factor");
  rs.low_freq_factor = r.positive_number("low_freq_factor");
  rs.high_freq_factor = r.positive_number("high_freq_factor");
  rs.original_max_position_embeddings = r.positive_int("original_max_position_embeddings");
  if (rs.high_freq_factor <= rs.low_freq_factor) {
    r.bad("high_freq_factor", "larger than `low_freq_factor`");
  }
  return rs;
}

// Features of these architectures that the engine does not implement: reject, never ignore.
void reject_unsupported(const Fields& f, Architecture arch) {
  if (f.get("hidden_act") && f.string_field("hidden_act") != "silu") {
    fail(ErrorKind::kUnsupported, f.source() + ": hidden_act `" + f.string_field("hidden_act") +
                                      "` is not supported (only silu)");
  }
  if (f.bool_or("use_sliding_window", false)) {
    fail(ErrorKind::kUnsupported, f.source() + ": use_sliding_window = true is not supported");
  }
  // Newer transformers list each layer's attention kind; only full attention is implemented.
  if (const nlohmann::json* lt = f.get("layer_types")) {
    if (!lt->is_array()) f.bad("layer_types", "a list of strings");
    for (const nlohmann::json& t : *lt) {
      if (!t.is_string()) f.bad("layer_types", "a list of strings");
      if (t.get<std::string>() != "full_attention") {
        fail(ErrorKind::kUnsupported, f.source() + ": layer_types entry `" + t.get<std::string>() +
                                          "` is not supported (only full_attention)");
      }
    }
  }
  if (arch == Architecture::kLlama && f.bool_or("mlp_bias", false)) {
    fail(ErrorKind::kUnsupported, f.source() + ": mlp_bias = true is not supported");
  }
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  const json j = detail::parse_json_text(json_text, source);
  const Fields f(j, source);
  ModelConfig c;
  c.arch = parse_architecture(f);
  const bool moe = c.arch == Architecture::kQwen3Moe;
  reject_unsupported(f, c.arch);

  c.vocab_size = f.positive_int("vocab_size");
  c.hidden_size = f.positive_int("hidden_size");
  c.num_hidden_layers = f.positive_int("num_hidden_layers");
  c.num_attention_heads = f.positive_int("num_attention_heads");
  c.num_key_value_heads = f.positive_int_or("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    f.bad("num_attention_heads", "a multiple of `num_key_value_heads` (" +
                                     std::to_string(c.num_key_value_heads) + "), not " +
                                     std::to_string(c.num_attention_heads));
  }
  if (f.get("head_dim")) {
    c.head_dim = f.positive_int("head_dim");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      f.bad("hidden_size", "divisible by `num_attention_heads` when `head_dim` is absent");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // Rotary embeddings rotate pairs of dimensions.
  if (c.head_dim % 2 != 0) f.bad("head_dim", "even (rotary embeddings rotate pairs)");
  c.max_position_embeddings =
      f.positive_int_or("max_position_embeddings", c.arch == Architecture::kLlama ? 2048 : 32768);
  c.rms_norm_eps = f.positive_number_or("rms_norm_eps", 1e-6);
  c.rope_theta = f.get("rope_theta") ? f.positive_number("rope_theta") : 10000.0;
  if (!f.get("rope_theta") && f.get("rope_parameters")) {
    const json* rp = f.get("rope_parameters");
    if (!rp->is_object()) f.bad("rope_parameters", "an object or null");
    c.rope_theta = Fields(*rp, source, "rope_parameters").positive_number_or("rope_theta", 10000.0);
  }
  c.rope_scaling = parse_rope_scaling(f);
  c.tie_word_embeddings = f.bool_or("tie_word_embeddings", false);
  c.attention_bias = f.bool_or("attention_bias", false);
  c.torch_dtype = parse_torch_dtype(f);
  c.bos_token_id = f.optional_int("bos_token_id");
  c.eos_token_ids = f.int_or_int_list("eos_token_id");

  if (moe) {
    // transformers 5 writes the expert count as `num_local_experts`.
    c.num_experts = f.get("num_experts") || !f.get("num_local_experts")
                        ? f.positive_int("num_experts")
                        : f.positive_int("num_local_experts");
    c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
    if (c.num_experts_per_tok > c.num_experts) {
      f.bad("num_experts_per_tok", "at most `num_experts` (" + std::to_string(c.num_experts) + ")");
    }
    c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
    c.norm_topk_prob = f.bool_or("norm_topk_prob", false);
    c.decoder_sparse_step = f.positive_int_or("decoder_sparse_step", 1);
    c.mlp_only_layers = f.int_list_or_empty("mlp_only_layers");
    for (int64_t l : c.mlp_only_layers) {
      if (l < 0 || l >= c.num_hidden_layers) {
        f.bad("mlp_only_layers", "a list of layer indices in [0, num_hidden_layers)");
      }
    }
    // A dense layer exists when some layer is listed, or sparse layers are every n-th only.
    const bool has_dense = !c.mlp_only_layers.empty() || c.decoder_sparse_step > 1;
    c.intermediate_size =
        has_dense || f.get("intermediate_size") ? f.positive_int("intermediate_size") : 0;
  } else {
    c.intermediate_size = f.positive_int("intermediate_size");
  }
  return c;
}

namespace {

// A file's text, or nullopt when it does not exist.
std::optional<std::string> read_if_exists(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  return detail::read_text(path);
}

// A folder stands for the named file inside it.
std::string in_folder(const std::string& path, const char* file) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return (std::filesystem::path(path) / file).string();
  return path;
}

}  // namespace

ModelConfig load_model_config(const std::string& path) {
  const std::string file = in_folder(path, "config.json");
  std::optional<std::string> text = read_if_exists(file);
  if (!text) fail(ErrorKind::kIo, "cannot open `" + file + "`: no such file");
  return parse_model_config(*text, file);
}

GenerationConfig parse_generation_config(const std::string& json_text, const std::string& source) {
  const json j = detail::parse_json_text(json_text, source);
  const Fields f(j, source);
  GenerationConfig g;
  g.eos_token_ids = f.int_or_int_list("eos_token_id");
  g.bos_token_id = f.optional_int("bos_token_id");
  g.temperature = f.optional_number("temperature");
  if (g.temperature && *g.temperature < 0) f.bad("temperature", "a number >= 0");
  g.top_p = f.optional_number("top_p");
  if (g.top_p && !(*g.top_p > 0 && *g.top_p <= 1)) f.bad("top_p", "a number in (0, 1]");
  g.min_p = f.optional_number("min_p");
  if (g.min_p && !(*g.min_p >= 0 && *g.min_p <= 1)) f.bad("min_p", "a number in [0, 1]");
  g.top_k = f.optional_int("top_k");
  if (g.top_k && *g.top_k < 0) f.bad("top_k", "an integer >= 0 (0 disables it)");
  g.repetition_penalty = f.optional_number("repetition_penalty");
  if (g.repetition_penalty && !(*g.repetition_penalty > 0))
    f.bad("repetition_penalty", "a number > 0");
  return g;
}

GenerationConfig load_generation_config(const std::string& path) {
  const std::string file = in_folder(path, "generation_config.json");
  std::optional<std::string> text = read_if_exists(file);
  if (!text) return {};
  return parse_generation_config(*text, file);
}

}  // namespace bitexact::io
