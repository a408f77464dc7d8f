// Helpers for the io tests: a temporary folder, and writers that build small safetensors and GGUF
// files byte by byte, so that every valid and corrupt input the tests read is made right here.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

// Runs `stmt`, which must throw bitexact::Error of `kind` whose message contains `substr`.
#define EXPECT_IO_ERROR(stmt, error_kind, substr)                                     \
  do {                                                                                \
    try {                                                                             \
      stmt;                                                                           \
      ADD_FAILURE() << "expected bitexact::Error containing \"" << (substr) << "\"";  \
    } catch (const ::bitexact::Error& e_) {                                           \
      EXPECT_EQ(e_.kind(), (error_kind)) << e_.what();                                \
      EXPECT_NE(std::string(e_.what()).find(substr), std::string::npos) << e_.what(); \
    }                                                                                 \
  } while (0)

namespace bitexact::io::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "bitexact_io_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <typename T>
void append_le(std::string* s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s->append(b, sizeof(T));
}

// F32 values as raw little-endian bytes.
inline std::string f32_bytes(const std::vector<float>& v) {
  std::string s;
  for (float f : v) append_le(&s, f);
  return s;
}

// A safetensors file from a header (serialised as given, then padded with spaces so that the data
// section starts 8-byte aligned, as writers do, unless `pad` is false) and the data section.
inline std::string safetensors_raw(std::string header, const std::string& data, bool pad = true) {
  while (pad && header.size() % 8 != 0) header += ' ';
  std::string s;
  append_le<uint64_t>(&s, header.size());
  return s + header + data;
}

struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// A valid safetensors file: tensors laid out in order, header padded with spaces to 8 bytes.
inline std::string safetensors_file(const std::vector<StTensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const StTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  return safetensors_raw(h.dump(), data);
}

// Builds a GGUF v3 file: metadata key/values, then tensor infos, then aligned tensor data.
class GgufBuilder {
 public:
  void kv_raw(const std::string& key, uint32_t type, const std::string& value_bytes) {
    str(&kv_, key);
    append_le(&kv_, type);
    kv_ += value_bytes;
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t v) { kv_raw(key, 4, le(v)); }
  void kv_i32(const std::string& key, int32_t v) { kv_raw(key, 5, le(v)); }
  void kv_f32(const std::string& key, float v) { kv_raw(key, 6, le(v)); }
  void kv_bool(const std::string& key, bool v) { kv_raw(key, 7, std::string(1, char(v))); }
  void kv_string(const std::string& key, const std::string& v) {
    std::string b;
    str(&b, v);
    kv_raw(key, 8, b);
  }
  void kv_string_array(const std::string& key, const std::vector<std::string>& v) {
    std::string b;
    append_le<uint32_t>(&b, 8);
    append_le<uint64_t>(&b, v.size());
    for (const auto& s : v) str(&b, s);
    kv_raw(key, 9, b);
  }
  void kv_f32_array(const std::string& key, const std::vector<float>& v) {
    std::string b;
    append_le<uint32_t>(&b, 6);
    append_le<uint64_t>(&b, v.size());
    for (float f : v) append_le(&b, f);
    kv_raw(key, 9, b);
  }
  // `ne` in GGUF order (fastest first); data appended at the next aligned offset.
  void tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type,
              const std::string& data) {
    while (data_.size() % alignment_ != 0) data_ += '\0';
    tensor_raw(name, ne, type, data_.size());
    data_ += data;
  }
  // A tensor info with an explicit offset (for corrupt files); no data is added.
  void tensor_raw(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type,
                  uint64_t offset) {
    str(&infos_, name);
    append_le<uint32_t>(&infos_, uint32_t(ne.size()));
    for (uint64_t d : ne) append_le(&infos_, d);
    append_le(&infos_, type);
    append_le(&infos_, offset);
    ++n_tensors_;
  }
  void append_data(const std::string& bytes) { data_ += bytes; }
  std::string build(uint32_t version = 3) const {
    std::string s = "GGUF";
    append_le(&s, version);
    append_le<uint64_t>(&s, n_tensors_);
    append_le<uint64_t>(&s, n_kv_);
    s += kv_ + infos_;
    while (s.size() % alignment_ != 0) s += '\0';
    return s + data_;
  }

 private:
  template <typename T>
  static std::string le(T v) {
    std::string s;
    append_le(&s, v);
    return s;
  }
  static void str(std::string* out, const std::string& v) {
    append_le<uint64_t>(out, v.size());
    *out += v;
  }
  std::string kv_, infos_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
  size_t alignment_ = 32;
};

}  // namespace bitexact::io::testing
