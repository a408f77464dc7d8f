// safetensors tests: files written here in C++ read back (single, folder, sharded index), and one
// test per kind of malformed header, each asserting the error kind and what the message names.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include "io/tests/io_test_util.h"

namespace bitexact::io {
namespace {

using testing::f32_bytes;
using testing::safetensors_file;
using testing::safetensors_raw;
using testing::StTensor;
using testing::TempDir;
using testing::write_file;

std::vector<SafetensorsEntry> parse(const std::string& bytes) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.st");
}

// A header with one F32 [2] tensor at the given offsets, over `data_bytes` bytes of data.
std::string one_tensor(const std::string& entry, size_t data_bytes = 8) {
  return safetensors_raw("{\"w\":" + entry + "}", std::string(data_bytes, '\0'));
}

TEST(Safetensors, SingleFileRoundTrip) {
  TempDir dir;
  const std::string bf16 = {char(0x80), char(0x3f), char(0x00), char(0x40)};  // 1.0, 2.0
  write_file(dir.file("model.safetensors"),
             safetensors_file({{"a", "F32", {2, 3}, f32_bytes({0, 1, 2, 3, 4, 5})},
                               {"b", "BF16", {2}, bf16},
                               {"c", "I32", {1}, std::string("\x07\0\0\0", 4)},
                               {"s", "F32", {}, f32_bytes({9.5f})},
                               {"z", "F16", {0, 4}, ""}}));
  for (const std::string& path : {dir.file("model.safetensors"), dir.path().string()}) {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(path);
    ASSERT_EQ(ck.tensors().size(), 5u);
    Tensor a = ck.tensor("a");
    EXPECT_EQ(a.dtype, DType::kF32);
    EXPECT_EQ(a.ndim, 2);
    EXPECT_EQ(a.dim(1), 3);
    EXPECT_EQ(a.ptr<float>()[4], 4.0f);
    Tensor b = ck.tensor("b");
    EXPECT_EQ(bf16_to_f32(b.ptr<uint16_t>()[1]), 2.0f);
    EXPECT_EQ(ck.tensor("c").ptr<int32_t>()[0], 7);
    EXPECT_EQ(ck.tensor("s").ndim, 0);
    EXPECT_EQ(ck.tensor("s").ptr<float>()[0], 9.5f);
    EXPECT_EQ(ck.find("z")->nbytes, 0u);
    EXPECT_EQ(ck.find("nope"), nullptr);
    EXPECT_IO_ERROR(ck.tensor("nope"), ErrorKind::kFormat, "no tensor `nope`");
  }
}

TEST(Safetensors, ShardedIndexAndFolder) {
  TempDir dir;
  write_file(dir.file("model-00001-of-00002.safetensors"),
             safetensors_file({{"x", "F32", {2}, f32_bytes({1, 2})}}));
  write_file(
      dir.file("model-00002-of-00002.safetensors"),
      safetensors_file({{"y", "F32", {1}, f32_bytes({3})}, {"z", "F32", {1}, f32_bytes({4})}}));
  write_file(dir.file("model.safetensors.index.json"),
             R"({"metadata": {"total_size": 16}, "weight_map": {
                 "x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors",
                 "z": "model-00002-of-00002.safetensors"}})");
  for (const std::string& path : {dir.file("model.safetensors.index.json"), dir.path().string()}) {
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(path);
    ASSERT_EQ(ck.tensors().size(), 3u);
    EXPECT_EQ(ck.tensor("x").ptr<float>()[1], 2.0f);
    EXPECT_EQ(ck.tensor("z").ptr<float>()[0], 4.0f);
    EXPECT_NE(ck.find("y")->file.find("00002-of"), std::string::npos);
  }
}

TEST(Safetensors, FolderOfShardsWithoutIndex) {
  TempDir dir;
  write_file(dir.file("a.safetensors"), safetensors_file({{"x", "F32", {1}, f32_bytes({1})}}));
  write_file(dir.file("b.safetensors"), safetensors_file({{"y", "F32", {1}, f32_bytes({2})}}));
  EXPECT_EQ(SafetensorsCheckpoint::open(dir.path().string()).tensors().size(), 2u);
  write_file(dir.file("c.safetensors"), safetensors_file({{"x", "F32", {1}, f32_bytes({3})}}));
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(dir.path().string()), ErrorKind::kFormat,
                  "tensor `x` appears in both");
}

TEST(Safetensors, BadIndex) {
  TempDir dir;
  write_file(dir.file("s.safetensors"), safetensors_file({{"x", "F32", {1}, f32_bytes({1})}}));
  const std::string index = dir.file("model.safetensors.index.json");
  write_file(index, R"({"weight_map": {"x": "s.safetensors", "q": "s.safetensors"}})");
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(index), ErrorKind::kFormat,
                  "puts tensor `q` in `s.safetensors`, but that file has no such tensor");
  write_file(index, R"({"weight_map": {"x": "../s.safetensors"}})");
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(index), ErrorKind::kFormat, "not a file name");
  write_file(index, R"({"weight_map": {"x": "missing.safetensors"}})");
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(index), ErrorKind::kIo, "missing.safetensors");
  write_file(index, R"({"metadata": {}})");
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(index), ErrorKind::kFormat, "`weight_map`");
  write_file(index, R"({"weight_map": )");
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(index), ErrorKind::kFormat, "not valid JSON");
  TempDir empty;
  EXPECT_IO_ERROR(SafetensorsCheckpoint::open(empty.path().string()), ErrorKind::kIo,
                  "no .safetensors file");
}

TEST(Safetensors, TruncatedFile) {
  EXPECT_IO_ERROR(parse(""), ErrorKind::kFormat, "too short");
  EXPECT_IO_ERROR(parse("abc"), ErrorKind::kFormat, "too short");
  // Every proper prefix of a valid file must fail cleanly.
  const std::string good = safetensors_file({{"a", "F32", {3}, f32_bytes({1, 2, 3})}});
  ASSERT_EQ(parse(good).size(), 1u);
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(parse(good.substr(0, n)), Error) << "prefix " << n;
  }
}

TEST(Safetensors, HeaderLength) {
  std::string s = safetensors_raw("{}", "");
  s[0] = 100;  // claims 100 header bytes, the file holds 2
  EXPECT_IO_ERROR(parse(s), ErrorKind::kFormat, "runs past the end of the file");
  s = safetensors_raw("{}", "");
  s[7] = 1;  // 2^56 bytes
  EXPECT_IO_ERROR(parse(s), ErrorKind::kFormat, "100 MB");
}

TEST(Safetensors, HeaderNotJson) {
  EXPECT_IO_ERROR(parse(safetensors_raw("{\"a\": [1, 2", "")), ErrorKind::kFormat,
                  "not valid JSON");
  EXPECT_IO_ERROR(parse(safetensors_raw("[1, 2]", "")), ErrorKind::kFormat,
                  "must be a JSON object");
  EXPECT_IO_ERROR(parse(safetensors_raw(std::string("{\"a\"\0}", 6), "")), ErrorKind::kFormat,
                  "not valid JSON");
  EXPECT_IO_ERROR(parse(safetensors_raw(R"({"w": 3})", "")), ErrorKind::kFormat,
                  "tensor `w`: entry must be a JSON object");
}

TEST(Safetensors, OffsetsOutsideFile) {
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,16]})")),
                  ErrorKind::kFormat,
                  "tensor `w`: data_offsets end 16 is outside the data section");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})")),
                  ErrorKind::kFormat, "end before they begin");
  EXPECT_IO_ERROR(
      parse(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})")),
      ErrorKind::kFormat, "`data_offsets` must be a list");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})")),
                  ErrorKind::kFormat, "`data_offsets` must be a list");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[2]})")), ErrorKind::kFormat,
                  "tensor `w`: `data_offsets`");
}

TEST(Safetensors, OverlappingTensors) {
  const std::string h = R"({"p":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                            "q":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_IO_ERROR(parse(safetensors_raw(h, std::string(16, '\0'))), ErrorKind::kFormat,
                  "tensors `p` and `q` overlap");
}

TEST(Safetensors, SizeMustMatchDtypeTimesShape) {
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 16)),
                  ErrorKind::kFormat, "tensor `w`: holds 8 bytes but F32 x [3] needs 12");
  EXPECT_IO_ERROR(
      parse(one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})")),
      ErrorKind::kFormat, "overflows");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})")),
                  ErrorKind::kFormat, "`shape` entries must be non-negative integers");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})")),
                  ErrorKind::kFormat, "`shape` entries must be non-negative integers");
}

TEST(Safetensors, UnsupportedDtype) {
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})")),
                  ErrorKind::kUnsupported, "tensor `w`: dtype `I64` is not supported");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]})")),
                  ErrorKind::kUnsupported, "`F8_E4M3`");
  EXPECT_IO_ERROR(parse(one_tensor(R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})")),
                  ErrorKind::kFormat, "`dtype` must be a string");
}

TEST(Safetensors, MetadataDuplicatesAndAlignment) {
  EXPECT_IO_ERROR(parse(safetensors_raw(R"({"__metadata__":{"a":1}})", "")), ErrorKind::kFormat,
                  "`__metadata__` value `a` must be a string");
  EXPECT_IO_ERROR(parse(safetensors_raw(R"({"__metadata__":[]})", "")), ErrorKind::kFormat,
                  "`__metadata__` must be an object");
  const std::string dup = R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},
                              "w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})";
  EXPECT_IO_ERROR(parse(safetensors_raw(dup, "")), ErrorKind::kFormat, "names `w` twice");
  // An unpadded header puts the data at an odd file offset: an F32 there would be misaligned.
  std::string h = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  if ((8 + h.size()) % 4 == 0) h += ' ';
  EXPECT_IO_ERROR(parse(safetensors_raw(h, std::string(4, '\0'), /*pad=*/false)),
                  ErrorKind::kFormat, "not aligned to its 4-byte element size");
  EXPECT_EQ(parse(safetensors_raw(h, std::string(4, '\0'))).size(), 1u);
}

TEST(Safetensors, TooManyDimensionsForAView) {
  TempDir dir;
  write_file(dir.file("m.safetensors"),
             safetensors_file({{"w", "F32", {1, 1, 1, 1, 2}, f32_bytes({1, 2})}}));
  SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir.file("m.safetensors"));
  EXPECT_EQ(ck.find("w")->shape.size(), 5u);
  EXPECT_IO_ERROR(ck.tensor("w"), ErrorKind::kUnsupported, "has 5 dimensions");
}

}  // namespace
}  // namespace bitexact::io
