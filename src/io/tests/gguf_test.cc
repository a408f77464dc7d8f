// GGUF tests on files built here byte by byte: a small valid file parsed in full, every prefix of
// it rejected cleanly, and one test per corruption (magic, version, counts, dims, types, offsets).
#include "io/gguf.h"

#include <gtest/gtest.h>

#include "io/model_config.h"
#include "io/tests/io_test_util.h"

namespace bitexact::io {
namespace {

using testing::f32_bytes;
using testing::GgufBuilder;

GgufFile parse(const std::string& bytes) {
  return GgufFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.gguf");
}

// A tiny llama: metadata of several types and three tensors of the three supported dtypes.
GgufBuilder tiny_llama() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.kv_u32("llama.embedding_length", 4);
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.feed_forward_length", 8);
  b.kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.attention.head_count_kv", 1);
  b.kv_u32("llama.context_length", 16);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  b.kv_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  b.kv_f32_array("tokenizer.ggml.scores", {0.5f, -1, 2});
  b.kv_i32("tokenizer.ggml.bos_token_id", 0);
  b.kv_u32("tokenizer.ggml.eos_token_id", 2);
  b.kv_bool("general.flag", true);
  b.tensor("token_embd.weight", {4, 3}, 0, f32_bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  b.tensor("output_norm.weight", {4}, 1, std::string("\x00\x3c\x00\x40\x00\x00\x00\x00", 8));
  b.tensor("blk.0.attn_q.weight", {2, 2}, 30, std::string("\x80\x3f\x00\x40\x40\x40\x80\x40", 8));
  return b;
}

TEST(Gguf, ParsesTinyFile) {
  const std::string bytes = tiny_llama().build();
  GgufFile g = parse(bytes);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 13u);
  EXPECT_EQ(g.get_int("tokenizer.ggml.bos_token_id"), 0);
  EXPECT_EQ(g.get_float_array("tokenizer.ggml.scores"), (std::vector<float>{0.5f, -1, 2}));
  EXPECT_TRUE(std::get<bool>(g.find("general.flag")->v));
  ASSERT_EQ(g.tensors().size(), 3u);
  const GgufTensorInfo& embd = g.tensors()[0];
  EXPECT_EQ(embd.shape, (std::vector<int64_t>{3, 4}));  // ne [4, 3] -> 3 rows of 4
  EXPECT_EQ(embd.offset % 32, 0u);
  EXPECT_EQ(embd.nbytes, 48u);
  EXPECT_EQ(g.tensor(embd).ptr<float>()[5], 5.0f);
  EXPECT_EQ(g.tensors()[1].dtype, DType::kF16);
  EXPECT_EQ(f16_to_f32(g.tensor(g.tensors()[1]).ptr<uint16_t>()[1]), 2.0f);
  const GgufTensorInfo* q = g.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kBF16);
  EXPECT_EQ(bf16_to_f32(g.tensor(*q).ptr<uint16_t>()[3]), 4.0f);

  ModelConfig c = model_config_from_gguf(g);
  EXPECT_EQ(c.vocab_size, 3);
  EXPECT_EQ(c.head_dim, 2);
  EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(c.bos_token_id, 0);
}

TEST(Gguf, Version2AndCustomAlignment) {
  GgufBuilder b;
  b.kv_u32("general.alignment", 64);
  b.kv_string("k", "v");
  b.tensor("t", {1}, 0, f32_bytes({3}));
  std::string bytes = b.build(2);
  // The builder pads to 32; the file says 64, so place the data at the 64-aligned start.
  size_t header = bytes.size() - 4;
  std::string fixed = bytes.substr(0, header);
  while (fixed.size() % 64 != 0) fixed += '\0';
  fixed += f32_bytes({3});
  GgufFile g = parse(fixed);
  EXPECT_EQ(g.version(), 2u);
  EXPECT_EQ(g.tensors()[0].offset % 64, 0u);
  EXPECT_EQ(g.tensor(g.tensors()[0]).ptr<float>()[0], 3.0f);
}

TEST(Gguf, EveryPrefixAndByteFlipFailsCleanly) {
  const std::string bytes = tiny_llama().build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(parse(bytes.substr(0, n)), Error) << "prefix " << n;
  }
  // Corrupting any one byte must parse or throw Error, never crash.
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (char v : {char(0xff), char(0x00), char(0x7f)}) {
      std::string bad = bytes;
      bad[i] = v;
      try {
        parse(bad);
      } catch (const Error&) {
      }
    }
  }
}

TEST(Gguf, BadMagicAndVersion) {
  std::string bytes = tiny_llama().build();
  std::string bad = bytes;
  bad[0] = 'X';
  EXPECT_IO_ERROR(parse(bad), ErrorKind::kFormat, "bad magic");
  EXPECT_IO_ERROR(parse(tiny_llama().build(1)), ErrorKind::kUnsupported, "GGUF v1");
  EXPECT_IO_ERROR(parse(tiny_llama().build(4)), ErrorKind::kUnsupported, "version 4");
  EXPECT_IO_ERROR(parse(tiny_llama().build(0x03000000)), ErrorKind::kUnsupported, "big-endian");
}

TEST(Gguf, HugeCounts) {
  std::string bytes = tiny_llama().build();
  std::string bad = bytes;
  bad[8 + 7] = 0x10;  // tensor count ~ 2^60
  EXPECT_IO_ERROR(parse(bad), ErrorKind::kFormat, "tensor count");
  bad = bytes;
  bad[16 + 6] = 0x10;  // metadata count ~ 2^52
  EXPECT_IO_ERROR(parse(bad), ErrorKind::kFormat, "metadata count");

  GgufBuilder arr;
  std::string v;
  testing::append_le<uint32_t>(&v, 4);  // uint32 elements
  testing::append_le<uint64_t>(&v, uint64_t(1) << 40);
  arr.kv_raw("big", 9, v);
  EXPECT_IO_ERROR(parse(arr.build()), ErrorKind::kFormat, "array `big` claims 1099511627776");

  // A count the bytes could cover but memory could not (each element costs ~48 bytes parsed).
  GgufBuilder many;
  std::string m;
  const uint64_t n = (uint64_t(1) << 24) + 1;
  testing::append_le<uint32_t>(&m, 0);  // uint8 elements
  testing::append_le<uint64_t>(&m, n);
  many.kv_raw("many", 9, m + std::string(n, '\0'));
  EXPECT_IO_ERROR(parse(many.build()), ErrorKind::kFormat, "past 16777216 array elements");

  GgufBuilder str;
  std::string s;
  testing::append_le<uint64_t>(&s, uint64_t(1) << 50);
  str.kv_raw("name", 8, s + "abc");
  EXPECT_IO_ERROR(parse(str.build()), ErrorKind::kFormat, "truncated file: value of `name`");
}

TEST(Gguf, BadMetadataValues) {
  GgufBuilder b;
  b.kv_raw("k", 13, "");
  EXPECT_IO_ERROR(parse(b.build()), ErrorKind::kFormat, "`k` has unknown value type 13");
  GgufBuilder dup;
  dup.kv_u32("k", 1);
  dup.kv_u32("k", 2);
  EXPECT_IO_ERROR(parse(dup.build()), ErrorKind::kFormat, "`k` appears twice");
  GgufBuilder boolean;
  boolean.kv_raw("flag", 7, "\x02");
  EXPECT_IO_ERROR(parse(boolean.build()), ErrorKind::kFormat, "not 0 or 1");
  GgufBuilder nested;
  std::string v;
  for (int i = 0; i < 20; ++i) {
    testing::append_le<uint32_t>(&v, 9);
    testing::append_le<uint64_t>(&v, 1);
  }
  nested.kv_raw("deep", 9, v.substr(0, v.size() - 12) + std::string(12, '\0'));
  EXPECT_IO_ERROR(parse(nested.build()), ErrorKind::kFormat, "nested too deeply");
  GgufBuilder align;
  align.kv_u32("general.alignment", 48);
  EXPECT_IO_ERROR(parse(align.build()), ErrorKind::kFormat, "power of two");
  GgufBuilder elem;
  std::string e;
  testing::append_le<uint32_t>(&e, 77);
  testing::append_le<uint64_t>(&e, 1);
  elem.kv_raw("arr", 9, e + "x");
  EXPECT_IO_ERROR(parse(elem.build()), ErrorKind::kFormat, "unknown element type 77");
}

TEST(Gguf, BadTensorInfos) {
  auto with_tensor = [](const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
    GgufBuilder b;
    b.tensor_raw("w", ne, type, offset);
    b.append_data(std::string(64, '\0'));
    return parse(b.build());
  };
  EXPECT_EQ(with_tensor({4}, 0, 32).tensors()[0].nbytes, 16u);
  EXPECT_IO_ERROR(with_tensor({1, 1, 1, 1, 1}, 0, 0), ErrorKind::kFormat, "has 5 dimensions");
  EXPECT_IO_ERROR(with_tensor({}, 0, 0), ErrorKind::kFormat, "has 0 dimensions");
  EXPECT_IO_ERROR(with_tensor({4, 0}, 0, 0), ErrorKind::kFormat, "dimensions must be positive");
  EXPECT_IO_ERROR(with_tensor({4}, 12, 0), ErrorKind::kUnsupported, "`w` has type Q4_K (12)");
  EXPECT_IO_ERROR(with_tensor({4}, 99, 0), ErrorKind::kUnsupported, "unknown (99)");
  EXPECT_IO_ERROR(with_tensor({4}, 0, 4), ErrorKind::kFormat, "not a multiple of the alignment");
  EXPECT_IO_ERROR(with_tensor({32}, 0, 0), ErrorKind::kFormat,
                  "`w` (128 bytes at data offset 0) runs past");
  EXPECT_IO_ERROR(with_tensor({4}, 0, uint64_t(1) << 63), ErrorKind::kFormat, "runs past the end");
  EXPECT_IO_ERROR(with_tensor({uint64_t(1) << 32, uint64_t(1) << 32}, 0, 0), ErrorKind::kFormat,
                  "overflows");

  GgufBuilder overlap;
  overlap.tensor_raw("a", {16}, 0, 0);
  overlap.tensor_raw("b", {4}, 0, 32);
  overlap.append_data(std::string(64, '\0'));
  EXPECT_IO_ERROR(parse(overlap.build()), ErrorKind::kFormat, "tensors `a` and `b` overlap");
  GgufBuilder dup;
  dup.tensor_raw("a", {4}, 0, 0);
  dup.tensor_raw("a", {4}, 0, 32);
  dup.append_data(std::string(64, '\0'));
  EXPECT_IO_ERROR(parse(dup.build()), ErrorKind::kFormat, "tensor `a` appears twice");
}

TEST(Gguf, ModelConfigErrors) {
  GgufBuilder other;
  other.kv_string("general.architecture", "qwen2");
  EXPECT_IO_ERROR(model_config_from_gguf(parse(other.build())), ErrorKind::kUnsupported,
                  "`qwen2` is not supported; supported: llama, qwen3");
  GgufBuilder missing;
  missing.kv_string("general.architecture", "llama");
  EXPECT_IO_ERROR(model_config_from_gguf(parse(missing.build())), ErrorKind::kFormat,
                  "`llama.embedding_length` is missing");

  GgufBuilder qwen;
  qwen.kv_string("general.architecture", "qwen3");
  qwen.kv_u32("qwen3.embedding_length", 4);
  qwen.kv_u32("qwen3.block_count", 1);
  qwen.kv_u32("qwen3.feed_forward_length", 8);
  qwen.kv_u32("qwen3.attention.head_count", 2);
  qwen.kv_u32("qwen3.attention.key_length", 6);
  qwen.kv_u32("qwen3.context_length", 16);
  qwen.kv_f32("qwen3.attention.layer_norm_rms_epsilon", 1e-6f);
  qwen.kv_f32("qwen3.rope.freq_base", 1e6f);
  qwen.tensor("token_embd.weight", {4, 5}, 30, std::string(40, '\0'));
  qwen.tensor("output.weight", {4, 5}, 30, std::string(40, '\0'));
  ModelConfig c = model_config_from_gguf(parse(qwen.build()));
  EXPECT_EQ(c.arch, Architecture::kQwen3);
  EXPECT_FALSE(c.rope_interleaved);
  EXPECT_EQ(c.head_dim, 6);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.vocab_size, 5);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_FALSE(c.tie_word_embeddings);
}

}  // namespace
}  // namespace bitexact::io
