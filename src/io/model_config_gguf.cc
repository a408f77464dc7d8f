// ModelConfig from GGUF metadata (llama.cpp's `<arch>.*` keys) for the llama and qwen3
// architectures, with the same validation as config.json and the GGUF-specific layout facts
// (rotary pairing, tied embeddings) made explicit.
#include <algorithm>

#include "core/error.h"
#include "io/gguf.h"
#include "io/model_config.h"

namespace bitexact::io {

ModelConfig model_config_from_gguf(const GgufFile& g) {
  const std::string arch_name = g.get_string("general.architecture");
  const std::string src = "`" + g.source() + "`: ";
  ModelConfig c;
  if (arch_name == "llama") {
    c.arch = Architecture::kLlama;
    // llama.cpp's converter permutes the q/k rows of HF llama weights for interleaved-pair rotary.
    c.rope_interleaved = true;
  } else if (arch_name == "qwen3") {
    c.arch = Architecture::kQwen3;
    c.rope_interleaved = false;  // NEOX-style rotary: the rows are stored unpermuted
  } else {
    fail(ErrorKind::kUnsupported, src + "GGUF general.architecture `" + arch_name +
                                      "` is not supported; supported: llama, qwen3");
  }
  const std::string p = arch_name + ".";
  auto positive = [&](const std::string& key, int64_t v) {
    if (v <= 0) {
      fail(ErrorKind::kFormat,
           src + "GGUF metadata `" + key + "` must be positive, not " + std::to_string(v));
    }
    return v;
  };
  auto pos_int = [&](const std::string& key) { return positive(key, g.get_int(key)); };

  c.hidden_size = pos_int(p + "embedding_length");
  c.num_hidden_layers = pos_int(p + "block_count");
  c.intermediate_size = pos_int(p + "feed_forward_length");
  c.num_attention_heads = pos_int(p + "attention.head_count");
  c.num_key_value_heads =
      positive(p + "attention.head_count_kv",
               g.get_int_or(p + "attention.head_count_kv", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail(ErrorKind::kFormat,
         src + "GGUF metadata: head_count " + std::to_string(c.num_attention_heads) +
             " is not a multiple of head_count_kv " + std::to_string(c.num_key_value_heads));
  }
  if (g.find(p + "attention.key_length")) {
    c.head_dim = pos_int(p + "attention.key_length");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      fail(ErrorKind::kFormat, src +
                                   "GGUF metadata: embedding_length is not divisible by head_count "
                                   "and attention.key_length is absent");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (g.find(p + "attention.value_length") &&
      g.get_int(p + "attention.value_length") != c.head_dim) {
    fail(ErrorKind::kUnsupported, src + "GGUF attention.value_length differs from key_length");
  }
  if (c.head_dim % 2 != 0)
    fail(ErrorKind::kFormat, src + "GGUF metadata: head dimension must be even");
  // Partial rotary (fewer rotated dims than head_dim) is not implemented: reject, never ignore.
  if (g.find(p + "rope.dimension_count") && g.get_int(p + "rope.dimension_count") != c.head_dim) {
    fail(ErrorKind::kUnsupported, src + "GGUF metadata: rope.dimension_count " +
                                      std::to_string(g.get_int(p + "rope.dimension_count")) +
                                      " differs from the head dimension " +
                                      std::to_string(c.head_dim) + " (partial rotary)");
  }
  if (g.find(p + "rope.scaling.type") && g.get_string(p + "rope.scaling.type") != "none") {
    fail(ErrorKind::kUnsupported, src + "GGUF rope scaling `" +
                                      g.get_string(p + "rope.scaling.type") + "` is not supported");
  }
  if (g.find_tensor("rope_freqs.weight")) {
    fail(ErrorKind::kUnsupported,
         src + "GGUF tensor rope_freqs.weight (llama3 rope scaling factors) is not supported");
  }
  c.max_position_embeddings = pos_int(p + "context_length");
  c.rms_norm_eps = g.get_float(p + "attention.layer_norm_rms_epsilon");
  if (!(c.rms_norm_eps > 0))
    fail(ErrorKind::kFormat, src + "GGUF metadata: rms epsilon must be positive");
  c.rope_theta = g.get_float_or(p + "rope.freq_base", 10000.0);
  if (!(c.rope_theta > 0))
    fail(ErrorKind::kFormat, src + "GGUF metadata: rope.freq_base must be positive");

  const GgufTensorInfo* embd = g.find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) {
    fail(ErrorKind::kFormat, src + "GGUF file has no 2-D token_embd.weight tensor");
  }
  if (embd->shape[1] != c.hidden_size) {
    fail(ErrorKind::kFormat, src + "GGUF token_embd.weight has width " +
                                 std::to_string(embd->shape[1]) + ", but embedding_length is " +
                                 std::to_string(c.hidden_size));
  }
  c.vocab_size = g.find("tokenizer.ggml.tokens")
                     ? int64_t(g.get_string_array("tokenizer.ggml.tokens").size())
                     : embd->shape[0];
  if (c.vocab_size != embd->shape[0]) {
    fail(ErrorKind::kFormat, src + "GGUF vocabulary has " + std::to_string(c.vocab_size) +
                                 " tokens but token_embd.weight has " +
                                 std::to_string(embd->shape[0]) + " rows");
  }
  c.torch_dtype = embd->dtype;
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;

  auto token_id = [&](const char* key) -> std::optional<int64_t> {
    if (!g.find(key)) return std::nullopt;
    int64_t id = g.get_int(key);
    if (id < 0 || id >= c.vocab_size) {
      fail(ErrorKind::kFormat, src + "GGUF metadata `" + key + "` = " + std::to_string(id) +
                                   " is outside the vocabulary");
    }
    return id;
  };
  c.bos_token_id = token_id("tokenizer.ggml.bos_token_id");
  // llama.cpp stops on end-of-generation tokens: eos, and eot/eom where a file names them.
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    std::optional<int64_t> id = token_id(key);
    if (id &&
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(*id);
    }
  }
  return c;
}

}  // namespace bitexact::io
