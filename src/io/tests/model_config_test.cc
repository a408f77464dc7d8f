// config.json / generation_config.json tests: real-shaped Qwen3, Qwen3-MoE and Llama-3 configs,
// defaults, and errors for missing fields, wrong types, bad values and unknown architectures.
#include "io/model_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/tests/io_test_util.h"

namespace bitexact::io {
namespace {

using nlohmann::json;

// The shape of Qwen3-0.6B's config.json.
json qwen3() {
  return json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
}

ModelConfig parse(const json& j) { return parse_model_config(j.dump(), "config.json"); }

TEST(ModelConfig, Qwen3) {
  ModelConfig c = parse(qwen3());
  EXPECT_EQ(c.arch, Architecture::kQwen3);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.head_dim, 128);  // given, not 1024 / 16
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
  EXPECT_FALSE(c.rope_interleaved);
  EXPECT_STREQ(architecture_name(c.arch), "qwen3");
}

TEST(ModelConfig, Qwen3MoeAndDefaults) {
  json j = qwen3();
  j["model_type"] = "qwen3_moe";
  j.erase("intermediate_size");
  j.erase("num_key_value_heads");
  j.erase("tie_word_embeddings");
  j["num_experts"] = 128;
  j["num_experts_per_tok"] = 8;
  j["moe_intermediate_size"] = 768;
  j["norm_topk_prob"] = true;
  j["mlp_only_layers"] = json::array();
  j["dtype"] = "float32";  // newer transformers' key wins over torch_dtype
  ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Architecture::kQwen3Moe);
  EXPECT_EQ(c.intermediate_size, 0);
  EXPECT_EQ(c.num_key_value_heads, 16);  // defaults to num_attention_heads
  EXPECT_FALSE(c.tie_word_embeddings);   // HF default
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.moe_intermediate_size, 768);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.decoder_sparse_step, 1);
  EXPECT_EQ(c.torch_dtype, DType::kF32);
  // A dense layer needs intermediate_size.
  j["mlp_only_layers"] = {0, 3};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "field `intermediate_size` is missing");
  j["intermediate_size"] = 3072;
  EXPECT_EQ(parse(j).mlp_only_layers, (std::vector<int64_t>{0, 3}));
  j["mlp_only_layers"] = {28};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat,
                  "`mlp_only_layers` must be a list of layer indices");
  j["mlp_only_layers"] = json::array();
  j["num_experts_per_tok"] = 129;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`num_experts_per_tok` must be at most");
  // transformers 5 spells the expert count `num_local_experts`.
  j["num_experts_per_tok"] = 8;
  j.erase("num_experts");
  j["num_local_experts"] = 64;
  EXPECT_EQ(parse(j).num_experts, 64);
  j.erase("num_local_experts");
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "field `num_experts` is missing");
}

TEST(ModelConfig, Llama3WithRopeScaling) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 128256},
            {"hidden_size", 2048},
            {"intermediate_size", 8192},
            {"num_hidden_layers", 16},
            {"num_attention_heads", 32},
            {"num_key_value_heads", 8},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 500000.0},
            {"eos_token_id", {128001, 128008, 128009}},
            {"bos_token_id", 128000},
            {"rope_scaling",
             {{"factor", 32.0},
              {"high_freq_factor", 4.0},
              {"low_freq_factor", 1.0},
              {"original_max_position_embeddings", 8192},
              {"rope_type", "llama3"}}}};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 2048);  // LlamaConfig's default

  // Newer transformers: rope_parameters carries rope_theta and the scaling.
  j.erase("rope_theta");
  j["rope_parameters"] = j["rope_scaling"];
  j["rope_parameters"]["rope_theta"] = 500000.0;
  j.erase("rope_scaling");
  c = parse(j);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  EXPECT_EQ(parse(j).rope_scaling.type, "");

  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "type `yarn` is not supported");
  j["rope_parameters"] = {{"type", "llama3"}, {"factor", 8.0}};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat,
                  "field `rope_parameters.low_freq_factor` is missing");
}

TEST(ModelConfig, MissingAndWrongTypedFields) {
  json j = qwen3();
  j.erase("hidden_size");
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "config.json: field `hidden_size` is missing");
  j = qwen3();
  j["num_key_value_heads"] = "8";
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat,
                  "config.json: field `num_key_value_heads` must be a positive integer");
  j["num_key_value_heads"] = 0;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`num_key_value_heads` must be a positive integer");
  j["num_key_value_heads"] = 8.5;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`num_key_value_heads` must be a positive integer");
  j["num_key_value_heads"] = 6;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`num_attention_heads` must be a multiple");
  j = qwen3();
  j["tie_word_embeddings"] = 1;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`tie_word_embeddings` must be true or false");
  j = qwen3();
  j["rms_norm_eps"] = -1;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`rms_norm_eps` must be a positive number");
  j = qwen3();
  j["eos_token_id"] = {1, "x"};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`eos_token_id`");
  j = qwen3();
  j.erase("head_dim");
  j["num_attention_heads"] = 24;  // 1024 % 24 != 0
  j["num_key_value_heads"] = 8;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`hidden_size` must be divisible");
  j = qwen3();
  j["torch_dtype"] = "float64";
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "`torch_dtype` is `float64`");
  j = qwen3();
  j["use_sliding_window"] = true;
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "use_sliding_window");
  j = qwen3();
  j["layer_types"] = {"full_attention", "sliding_attention"};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "layer_types entry `sliding_attention`");
  j["layer_types"] = {"full_attention", "full_attention"};
  EXPECT_EQ(parse(j).num_hidden_layers, 28);
  j = qwen3();
  j["hidden_act"] = "gelu";
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "hidden_act `gelu`");
  EXPECT_IO_ERROR(parse_model_config("{\"model_type\": ", "config.json"), ErrorKind::kFormat,
                  "config.json: not valid JSON");
  EXPECT_IO_ERROR(parse_model_config("[1]", "config.json"), ErrorKind::kFormat, "JSON object");
}

TEST(ModelConfig, UnknownArchitecture) {
  json j = qwen3();
  j["model_type"] = "mistral";
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported,
                  "unknown architecture mistral; supported: llama, qwen3, qwen3_moe");
  j.erase("model_type");
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_IO_ERROR(parse(j), ErrorKind::kUnsupported, "unknown architecture GPT2LMHeadModel");
  j.erase("architectures");
  EXPECT_IO_ERROR(parse(j), ErrorKind::kFormat, "`model_type`");
}

TEST(GenerationConfig, ParseAndLoad) {
  GenerationConfig g = parse_generation_config(
      R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
          "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95})",
      "generation_config.json");
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(g.bos_token_id, 151643);
  EXPECT_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_EQ(g.top_p, 0.95);
  EXPECT_FALSE(g.min_p.has_value());
  EXPECT_EQ(parse_generation_config(R"({"eos_token_id": 2})", "g").eos_token_ids,
            (std::vector<int64_t>{2}));
  EXPECT_IO_ERROR(parse_generation_config(R"({"top_p": 1.5})", "g.json"), ErrorKind::kFormat,
                  "g.json: field `top_p` must be a number in (0, 1]");
  EXPECT_IO_ERROR(parse_generation_config(R"({"temperature": "hot"})", "g.json"),
                  ErrorKind::kFormat, "`temperature`");

  testing::TempDir dir;
  EXPECT_TRUE(load_generation_config(dir.path().string()).eos_token_ids.empty());  // absent
  testing::write_file(dir.file("generation_config.json"), R"({"eos_token_id": [1, 2]})");
  EXPECT_EQ(load_generation_config(dir.path().string()).eos_token_ids.size(), 2u);
  testing::write_file(dir.file("generation_config.json"), "{");
  EXPECT_IO_ERROR(load_generation_config(dir.file("generation_config.json")), ErrorKind::kFormat,
                  "not valid JSON");
  testing::write_file(dir.file("config.json"), qwen3().dump());
  EXPECT_EQ(load_model_config(dir.path().string()).hidden_size, 1024);
  EXPECT_IO_ERROR(load_model_config(dir.file("nope.json")), ErrorKind::kIo, "nope.json");
}

}  // namespace
}  // namespace bitexact::io
