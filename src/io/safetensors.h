// safetensors reader: one file or a sharded checkpoint (model.safetensors.index.json), memory
// mapped. The JSON header is validated in full: its length, every dtype, shape and offset pair,
// offsets inside the file, sizes consistent with dtype x shape, and no two tensors overlapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace bitexact::io {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping
  size_t nbytes = 0;
  std::string file;  // the file it came from, for messages
};

// Parses and validates one whole safetensors file held in memory (length prefix, JSON header,
// data section). The entries point into `data`, which the caller keeps alive; `source` names the
// file in messages. open() uses it for every file, and the fuzzer calls it on raw bytes.
std::vector<SafetensorsEntry> parse_safetensors(const uint8_t* data, size_t size,
                                                const std::string& source);

class SafetensorsCheckpoint {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  // Throws Error(kIo / kFormat / kUnsupported) with the file and tensor named.
  static SafetensorsCheckpoint open(const std::string& path);

  const std::map<std::string, SafetensorsEntry, std::less<>>& tensors() const { return tensors_; }
  const SafetensorsEntry* find(std::string_view name) const;
  // A CPU view; throws Error(kFormat) naming the tensor if absent.
  Tensor tensor(std::string_view name) const;

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, SafetensorsEntry, std::less<>> tensors_;
};

}  // namespace bitexact::io
