// safetensors reader: validates one file's header completely (parse_safetensors), and assembles a
// checkpoint from a single file, a sharded index (model.safetensors.index.json) or a folder.
#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/io_util.h"

namespace bitexact::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A header larger than this is corrupt, not a model: real headers are a few MB at most.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void format_error(const std::string& source, const std::string& msg) {
  fail(ErrorKind::kFormat, "`" + source + "`: " + msg);
}

// Supported dtypes; every other safetensors dtype is well-formed but unsupported.
bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32")
    *out = DType::kF32;
  else if (s == "BF16")
    *out = DType::kBF16;
  else if (s == "F16")
    *out = DType::kF16;
  else if (s == "I32")
    *out = DType::kI32;
  else
    return false;
  return true;
}

// A non-negative JSON integer that fits in int64, or false.
bool json_index(const json& j, uint64_t* out) {
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return *out <= uint64_t(INT64_MAX);
  }
  int64_t v = j.get<int64_t>();
  if (v < 0) return false;
  *out = uint64_t(v);
  return true;
}

// Parses JSON text, rejecting duplicate keys in the top-level object (nlohmann would silently keep
// the last one, and a checkpoint naming one tensor twice is ambiguous).
json parse_json_object(const char* begin, const char* end, const std::string& source,
                       const std::string& what) {
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && duplicate.empty() &&
        !keys.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j = json::parse(begin, end, cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) format_error(source, what + " is not valid JSON");
  if (!j.is_object()) format_error(source, what + " must be a JSON object, not " + j.type_name());
  if (!duplicate.empty()) format_error(source, what + " names `" + duplicate + "` twice");
  return j;
}

SafetensorsEntry parse_entry(const std::string& name, const json& e, const uint8_t* data_section,
                             uint64_t data_size, uint64_t data_start, const std::string& source) {
  const std::string where = "tensor `" + name + "`: ";
  if (!e.is_object()) format_error(source, where + "entry must be a JSON object");
  SafetensorsEntry out;
  out.name = name;
  out.file = source;

  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) format_error(source, where + "`dtype` must be a string");
  const std::string dtype = dt->get<std::string>();
  if (!parse_dtype(dtype, &out.dtype)) {
    fail(ErrorKind::kUnsupported, "`" + source + "`: " + where + "dtype `" + dtype +
                                      "` is not supported (supported: F32, BF16, F16, I32)");
  }

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) format_error(source, where + "`shape` must be a list");
  for (const json& d : *sh) {
    uint64_t v;
    if (!json_index(d, &v))
      format_error(source, where + "`shape` entries must be non-negative integers");
    out.shape.push_back(int64_t(v));
  }
  uint64_t numel = 0, nbytes = 0;
  if (!detail::numel_ok(out.shape, &numel) ||
      !detail::mul_ok(numel, dtype_size(out.dtype), &nbytes)) {
    format_error(source, where + "shape " + detail::shape_string(out.shape) + " overflows");
  }

  auto off = e.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (off == e.end() || !off->is_array() || off->size() != 2 || !json_index((*off)[0], &begin) ||
      !json_index((*off)[1], &end)) {
    format_error(source,
                 where + "`data_offsets` must be a list [begin, end] of non-negative integers");
  }
  if (begin > end) {
    format_error(source, where + "data_offsets [" + std::to_string(begin) + ", " +
                             std::to_string(end) + "] end before they begin");
  }
  if (end > data_size) {
    format_error(source, where + "data_offsets end " + std::to_string(end) +
                             " is outside the data section (" + std::to_string(data_size) +
                             " bytes; the file is truncated or corrupt)");
  }
  if (end - begin != nbytes) {
    format_error(source, where + "holds " + std::to_string(end - begin) + " bytes but " + dtype +
                             " x " + detail::shape_string(out.shape) + " needs " +
                             std::to_string(nbytes));
  }
  // Kernels load elements through typed pointers; the mapping is page aligned, so the file
  // offset decides the alignment (writers pad the header to 8 bytes for this reason).
  if ((data_start + begin) % dtype_size(out.dtype) != 0) {
    format_error(source, where + "data at file offset " + std::to_string(data_start + begin) +
                             " is not aligned to its " + std::to_string(dtype_size(out.dtype)) +
                             "-byte element size");
  }
  out.data = data_section + begin;
  out.nbytes = size_t(nbytes);
  return out;
}

}  // namespace

namespace {

std::vector<SafetensorsEntry> parse_unchecked(const uint8_t* data, size_t size,
                                              const std::string& source) {
  if (size < 8) {
    format_error(source, "file is " + std::to_string(size) +
                             " bytes, too short for a safetensors header (truncated?)");
  }
  const uint64_t header_len = detail::load_le<uint64_t>(data);
  if (header_len > kMaxHeaderBytes) {
    format_error(source, "header length " + std::to_string(header_len) +
                             " is larger than the 100 MB limit (not a safetensors file?)");
  }
  if (header_len > size - 8) {
    format_error(source, "header length " + std::to_string(header_len) +
                             " runs past the end of the file (" + std::to_string(size) +
                             " bytes; truncated?)");
  }
  const char* text = reinterpret_cast<const char*>(data + 8);
  const json header = parse_json_object(text, text + header_len, source, "header");

  const uint64_t data_start = 8 + header_len;
  const uint8_t* data_section = data + data_start;
  const uint64_t data_size = size - data_start;
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) format_error(source, "`__metadata__` must be an object");
      for (const auto& [k, v] : e.items()) {
        if (!v.is_string())
          format_error(source, "`__metadata__` value `" + k + "` must be a string");
      }
      continue;
    }
    entries.push_back(parse_entry(name, e, data_section, data_size, data_start, source));
  }

  // No two tensors may share bytes: sort the non-empty ranges and compare neighbours.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries) {
    if (e.nbytes > 0) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsEntry* prev = by_offset[i - 1];
    if (prev->data + prev->nbytes > by_offset[i]->data) {
      format_error(source, "tensors `" + prev->name + "` and `" + by_offset[i]->name +
                               "` overlap in the data section");
    }
  }
  return entries;
}

}  // namespace

std::vector<SafetensorsEntry> parse_safetensors(const uint8_t* data, size_t size,
                                                const std::string& source) {
  try {
    return parse_unchecked(data, size, source);
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::kOutOfResources, "`" + source + "`: out of memory reading the header");
  }
}

namespace {

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  std::vector<fs::path> files;  // files whose every tensor is loaded
  fs::path index_path;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json", ec)) {
      index_path = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors", ec)) {
      files.push_back(p / "model.safetensors");
    } else {
      for (const auto& de : fs::directory_iterator(p, ec)) {
        if (de.path().extension() == ".safetensors") files.push_back(de.path());
      }
      std::sort(files.begin(), files.end());
      if (files.empty()) {
        fail(ErrorKind::kIo,
             "`" + path + "` holds no model.safetensors.index.json and no .safetensors file");
      }
    }
  } else if (p.extension() == ".json") {
    index_path = p;
  } else {
    files.push_back(p);
  }

  SafetensorsCheckpoint ckpt;
  auto load_file = [&](const fs::path& f) {
    auto mapped = std::make_shared<MappedFile>(f.string());
    ckpt.files_.push_back(mapped);
    return parse_safetensors(mapped->data(), mapped->size(), f.string());
  };

  if (!index_path.empty()) {
    const std::string src = index_path.string();
    const std::string text = detail::read_text(src);
    const json index = parse_json_object(text.data(), text.data() + text.size(), src, "index");
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) format_error(src, "`weight_map` must be an object");
    std::map<std::string, std::vector<std::string>> by_file;  // shard -> tensors it must hold
    for (const auto& [name, f] : wm->items()) {
      if (!f.is_string()) format_error(src, "weight_map entry `" + name + "` must be a file name");
      const std::string file = f.get<std::string>();
      // Shards live beside the index; a path elsewhere is a corrupt (or hostile) index.
      if (file.empty() || file == "." || file == ".." ||
          file.find_first_of("/\\") != std::string::npos) {
        format_error(src, "weight_map entry `" + name + "` names `" + file +
                              "`, not a file name in the index's folder");
      }
      by_file[file].push_back(name);
    }
    for (const auto& [file, names] : by_file) {
      const fs::path shard = index_path.parent_path() / file;
      std::map<std::string, SafetensorsEntry> in_shard;
      for (auto& e : load_file(shard)) in_shard.emplace(e.name, std::move(e));
      for (const std::string& name : names) {
        auto it = in_shard.find(name);
        if (it == in_shard.end()) {
          format_error(src, "weight_map puts tensor `" + name + "` in `" + file +
                                "`, but that file has no such tensor");
        }
        ckpt.tensors_.emplace(name, std::move(it->second));
      }
    }
  } else {
    for (const fs::path& f : files) {
      for (auto& e : load_file(f)) {
        auto [it, inserted] = ckpt.tensors_.emplace(e.name, e);
        if (!inserted) {
          fail(ErrorKind::kFormat, "tensor `" + e.name + "` appears in both `" + it->second.file +
                                       "` and `" + e.file + "`");
        }
      }
    }
  }
  return ckpt;
}

const SafetensorsEntry* SafetensorsCheckpoint::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Tensor SafetensorsCheckpoint::tensor(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(ErrorKind::kFormat, "the checkpoint has no tensor `" + std::string(name) + "`");
  if (e->shape.size() > size_t(kMaxDims)) {
    fail(ErrorKind::kUnsupported, "tensor `" + e->name + "` in `" + e->file + "` has " +
                                      std::to_string(e->shape.size()) + " dimensions; at most " +
                                      std::to_string(kMaxDims) + " are supported");
  }
  return detail::mapped_view(e->data, e->dtype, e->shape);
}

}  // namespace bitexact::io
