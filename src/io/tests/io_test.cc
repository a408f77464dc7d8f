// io tests: MappedFile, and the real stories260K.gguf from ../shared parsed end to end (every
// metadata key, every tensor, the hyper-parameters a llama model needs).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "io/gguf.h"
#include "io/mapped_file.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "io/tests/io_test_util.h"

namespace bitexact::io {
namespace {

using testing::TempDir;

const std::string kStories = std::string(BITEXACT_SHARED_DIR) + "/models/stories260K.gguf";

TEST(MappedFile, MapsContentAndEmptyFile) {
  TempDir dir;
  testing::write_file(dir.file("a.bin"), "hello");
  MappedFile f(dir.file("a.bin"));
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), 5), "hello");
  EXPECT_EQ(f.path(), dir.file("a.bin"));

  testing::write_file(dir.file("empty.bin"), "");
  MappedFile e(dir.file("empty.bin"));
  EXPECT_EQ(e.size(), 0u);
}

TEST(MappedFile, MissingFileAndFolderAreIoErrors) {
  TempDir dir;
  EXPECT_IO_ERROR(MappedFile(dir.file("nope.bin")), ErrorKind::kIo, "No such file or directory");
  EXPECT_IO_ERROR(MappedFile(dir.file("nope.bin")), ErrorKind::kIo, "nope.bin");
  EXPECT_IO_ERROR(MappedFile(dir.path().string()), ErrorKind::kIo, "not a regular file");
}

TEST(Stories260K, ParsesMetadataAndTensors) {
  GgufFile g = GgufFile::open(kStories);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 19u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(g.get_float_array("tokenizer.ggml.scores").size(), 512u);
  std::vector<int64_t> types = g.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 512u);
  EXPECT_EQ(types[0], 2);
  EXPECT_EQ(types[3], 6);
  EXPECT_EQ(g.get_int("tokenizer.ggml.seperator_token_id"), 4294967295);

  ASSERT_EQ(g.tensors().size(), 48u);
  const GgufTensorInfo* embd = g.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kF32);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(embd->offset, 14176u);  // 14152 bytes of header, aligned up to 32
  Tensor t = g.tensor(*embd);
  EXPECT_EQ(t.ndim, 2);
  EXPECT_EQ(t.dim(0), 512);
  EXPECT_EQ(t.stride[0], 64);
  EXPECT_EQ(t.ptr<float>()[0], -0.29474878311157227f);
  EXPECT_EQ(t.ptr<float>()[3], 0.34057360887527466f);
  // GGUF ne = [172, 64] for ffn_down: 64 rows of 172 (row-major [hidden, ffn]).
  EXPECT_EQ(g.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(g.find_tensor("blk.4.ffn_norm.weight")->shape, (std::vector<int64_t>{64}));
  const GgufTensorInfo* last = g.find_tensor("blk.4.ffn_norm.weight");
  EXPECT_EQ(last->offset + last->nbytes, 1185376u);  // the last tensor ends the file
  EXPECT_EQ(g.tensor(*last).ptr<float>()[63], 1.234261155128479f);
  for (const auto& info : g.tensors()) {
    Tensor v = g.tensor(info);
    for (int64_t i = 0; i < v.numel(); ++i)
      ASSERT_TRUE(std::isfinite(v.ptr<float>()[i])) << info.name;
  }
}

TEST(Stories260K, ModelConfig) {
  GgufFile g = GgufFile::open(kStories);
  ModelConfig c = model_config_from_gguf(g);
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(float(c.rms_norm_eps), 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.rope_interleaved);
  EXPECT_FALSE(c.tie_word_embeddings);  // the file has output.weight
  EXPECT_EQ(c.torch_dtype, DType::kF32);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(Stories260K, TypedGettersNameKeyOnMisuse) {
  GgufFile g = GgufFile::open(kStories);
  EXPECT_IO_ERROR(g.get_int("general.architecture"), ErrorKind::kFormat,
                  "`general.architecture` is a string, expected an integer");
  EXPECT_IO_ERROR(g.get_string("llama.nope"), ErrorKind::kFormat, "`llama.nope` is missing");
  EXPECT_IO_ERROR(g.get_string_array("tokenizer.ggml.scores"), ErrorKind::kFormat,
                  "expected an array of strings");
  EXPECT_EQ(g.get_int_or("llama.nope", 7), 7);
  EXPECT_EQ(g.get_float_or("llama.rope.freq_base", 10000.0), 10000.0);
  EXPECT_IO_ERROR(g.get_int_or("general.name", 7), ErrorKind::kFormat, "`general.name`");
  EXPECT_EQ(g.get_float("llama.block_count"), 5.0);  // integers read as numbers too
}

// The fuzzers' seeds (fuzz/make_seed_corpus.py) must stay valid inputs, or fuzzing starts from
// the first error branch instead of deep inside the parsers.
TEST(FuzzSeeds, AreValidInputs) {
  namespace fs = std::filesystem;
  const fs::path corpus = fs::path(BITEXACT_SOURCE_DIR) / "fuzz" / "corpus";
  int n = 0;
  for (const auto& f : fs::directory_iterator(corpus / "fuzz_safetensors")) {
    EXPECT_NO_THROW(SafetensorsCheckpoint::open(f.path().string())) << f.path();
    ++n;
  }
  for (const auto& f : fs::directory_iterator(corpus / "fuzz_gguf")) {
    GgufFile g = GgufFile::open(f.path().string());
    if (!g.tensors().empty()) {
      EXPECT_NO_THROW(model_config_from_gguf(g)) << f.path();
    }
    ++n;
  }
  for (const auto& f : fs::directory_iterator(corpus / "fuzz_config")) {
    const std::string path = f.path().string();
    if (f.path().filename() == "generation_config.json") {
      EXPECT_EQ(load_generation_config(path).eos_token_ids.size(), 2u);
    } else {
      EXPECT_NO_THROW(load_model_config(path)) << path;
    }
    ++n;
  }
  EXPECT_GE(n, 9);
}

}  // namespace
}  // namespace bitexact::io
