// GGUF v2/v3 reader (llama.cpp's model file format): metadata key/values and F32/F16/BF16 tensors,
// memory-mapped. Every offset and size is validated against the file before use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace bitexact::io {

// One metadata value. Arrays hold values of one element type.
struct GgufValue {
  using Array = std::vector<GgufValue>;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;
  // Which GGUF type code it was stored with (GGUF_TYPE_*), kept for messages.
  uint32_t type = 0;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype;
  // Shape in row-major order (GGUF stores ne[0] fastest; this is reversed to [.., ne1, ne0]).
  std::vector<int64_t> shape;
  size_t offset = 0;  // from the start of the file, validated to lie inside it
  size_t nbytes = 0;
};

class GgufFile {
 public:
  // Throws Error(kIo) if the file cannot be opened, Error(kFormat) if it is malformed, and
  // Error(kUnsupported) for tensor types other than F32/F16/BF16.
  static GgufFile open(const std::string& path);
  // Parses a whole GGUF file held in memory that the caller keeps alive while the result is used
  // (tests, the fuzzer); `source` names it in messages. Same checks and errors as open().
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& source);

  uint32_t version() const { return version_; }
  const std::string& source() const { return source_; }  // the path, for messages
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // Typed getters: throw Error(kFormat) naming the key when it is missing or of another type.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;   // any integer type
  double get_float(std::string_view key) const;  // f32/f64 (or an integer)
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  // Same, with a default when the key is absent (still throws if present with a wrong type).
  int64_t get_int_or(std::string_view key, int64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // A CPU view of the tensor's bytes inside the mapping (valid while this GgufFile lives).
  Tensor tensor(const GgufTensorInfo& info) const;

 private:
  static GgufFile parse_unchecked(const uint8_t* data, size_t size, const std::string& source);

  std::shared_ptr<MappedFile> file_;  // null when parsed from caller-owned memory
  const uint8_t* base_ = nullptr;     // the whole file's bytes
  size_t size_ = 0;
  std::string source_;  // path (or name) used in messages
  uint32_t version_ = 0;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;  // name -> index in tensors_
};

}  // namespace bitexact::io
