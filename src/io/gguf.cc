// GGUF v2/v3 parser. Every count and length is checked against the bytes that remain BEFORE
// anything is allocated or read, so a corrupt file fails with Error(kFormat), never with a huge
// allocation, an out-of-bounds read or a stack overflow (nested arrays have a depth limit).
#include "io/gguf.h"

#include <algorithm>
#include <new>

#include "core/error.h"
#include "io/io_util.h"

namespace bitexact::io {

namespace {

// GGUF metadata value types (gguf_type in ggml's gguf.h).
enum : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
// ggml tensor types this reader supports; the rest are named in the error.
enum : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30 };

constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;             // real files nest at most one level
constexpr int kMaxTensorDims = 4;             // GGML_MAX_DIMS
constexpr uint64_t kMinKvBytes = 13;          // key length (8) + type (4) + the smallest value (1)
constexpr uint64_t kMinTensorInfoBytes = 32;  // name length, n_dims, one dim, type, offset
// Metadata arrays are vocabulary-sized (tokens, scores, types, merges: ~10^5 to 10^6 entries);
// each parsed element costs ~48 bytes, so a cap keeps a corrupt multi-GB file from asking for
// hundreds of GB even when its bytes would cover the count.
constexpr uint64_t kMaxMetadataElements = uint64_t(1) << 24;

const char* ggml_type_name(uint32_t t) {
  static const char* const kNames[] = {
      "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
      "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
      "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
      "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
      "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
      "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
  return t < sizeof(kNames) / sizeof(kNames[0]) ? kNames[t] : "unknown";
}

// Bytes of one fixed-size value, 0 for string/array.
uint64_t scalar_size(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

// Bounds-checked cursor over the file's bytes.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void error(const std::string& msg) const {
    fail(ErrorKind::kFormat, "`" + source_ + "`: at byte " + std::to_string(pos_) + ": " + msg);
  }
  void need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      error("truncated file: " + what + " needs " + std::to_string(n) + " bytes, " +
            std::to_string(remaining()) + " remain");
    }
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v = detail::load_le<T>(data_ + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    uint64_t n = read<uint64_t>(what + " length");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& source_;
};

GgufValue read_value(Reader& r, uint32_t type, const std::string& key, int depth,
                     uint64_t* elements) {
  GgufValue out;
  out.type = type;
  const std::string what = "value of `" + key + "`";
  switch (type) {
    case kU8:
      out.v = uint64_t(r.read<uint8_t>(what));
      break;
    case kU16:
      out.v = uint64_t(r.read<uint16_t>(what));
      break;
    case kU32:
      out.v = uint64_t(r.read<uint32_t>(what));
      break;
    case kU64:
      out.v = r.read<uint64_t>(what);
      break;
    case kI8:
      out.v = int64_t(r.read<int8_t>(what));
      break;
    case kI16:
      out.v = int64_t(r.read<int16_t>(what));
      break;
    case kI32:
      out.v = int64_t(r.read<int32_t>(what));
      break;
    case kI64:
      out.v = r.read<int64_t>(what);
      break;
    case kF32:
      out.v = double(r.read<float>(what));
      break;
    case kF64:
      out.v = r.read<double>(what);
      break;
    case kBool: {
      uint8_t b = r.read<uint8_t>(what);
      if (b > 1) r.error("boolean `" + key + "` holds " + std::to_string(b) + ", not 0 or 1");
      out.v = b == 1;
      break;
    }
    case kString:
      out.v = r.read_string(what);
      break;
    case kArray: {
      if (depth >= kMaxArrayDepth) r.error("arrays in `" + key + "` are nested too deeply");
      uint32_t elem = r.read<uint32_t>("array type of `" + key + "`");
      uint64_t n = r.read<uint64_t>("array length of `" + key + "`");
      uint64_t min_elem = elem == kString ? 8 : elem == kArray ? 12 : scalar_size(elem);
      if (min_elem == 0) {
        r.error("array `" + key + "` has unknown element type " + std::to_string(elem));
      }
      // Checked before reserving: a corrupt count must not become a huge allocation.
      if (n > r.remaining() / min_elem) {
        r.error("array `" + key + "` claims " + std::to_string(n) +
                " elements, more than the file's remaining " + std::to_string(r.remaining()) +
                " bytes can hold");
      }
      *elements += n;
      if (*elements > kMaxMetadataElements) {
        r.error("array `" + key + "` takes the metadata past " +
                std::to_string(kMaxMetadataElements) + " array elements (corrupt file?)");
      }
      GgufValue::Array arr;
      arr.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(r, elem, key, depth + 1, elements));
      out.v = std::move(arr);
      break;
    }
    default:
      r.error("metadata `" + key + "` has unknown value type " + std::to_string(type));
  }
  return out;
}

uint64_t alignment_of(const std::map<std::string, GgufValue, std::less<>>& md,
                      const std::string& source) {
  auto it = md.find("general.alignment");
  if (it == md.end()) return kDefaultAlignment;
  const auto* u = std::get_if<uint64_t>(&it->second.v);
  const auto* i = std::get_if<int64_t>(&it->second.v);
  uint64_t a = u ? *u : i && *i > 0 ? uint64_t(*i) : 0;
  if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 30)) {
    fail(ErrorKind::kFormat, "`" + source + "`: general.alignment must be a power of two");
  }
  return a;
}

}  // namespace

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& source) {
  try {
    return parse_unchecked(data, size, source);
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::kOutOfResources, "`" + source + "`: out of memory reading the GGUF metadata");
  }
}

GgufFile GgufFile::parse_unchecked(const uint8_t* data, size_t size, const std::string& source) {
  GgufFile g;
  g.base_ = data;
  g.size_ = size;
  g.source_ = source;
  Reader r(data, size, source);

  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != 0x46554747u) r.error("bad magic: not a GGUF file");
  g.version_ = r.read<uint32_t>("version");
  if (g.version_ != 2 && g.version_ != 3) {
    std::string why =
        g.version_ == 1 ? "GGUF v1 is not supported (re-convert the model)"
        : (g.version_ & 0xffffu) == 0
            ? "this looks like a big-endian GGUF file, which is not supported"
            : "GGUF version " + std::to_string(g.version_) + " is not supported (2 and 3 are)";
    fail(ErrorKind::kUnsupported, "`" + source + "`: " + why);
  }
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  if (n_kv > r.remaining() / kMinKvBytes) {
    r.error("metadata count " + std::to_string(n_kv) + " is larger than the file can hold");
  }
  uint64_t elements = 0;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    uint32_t type = r.read<uint32_t>("type of `" + key + "`");
    GgufValue v = read_value(r, type, key, 0, &elements);
    if (!g.metadata_.emplace(key, std::move(v)).second) {
      r.error("metadata key `" + key + "` appears twice");
    }
  }
  const uint64_t alignment = alignment_of(g.metadata_, source);

  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    r.error("tensor count " + std::to_string(n_tensors) + " is larger than the file can hold");
  }
  g.tensors_.reserve(size_t(n_tensors));
  std::vector<uint64_t> rel_offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.read_string("tensor name");
    const std::string where = "tensor `" + t.name + "`";
    if (!g.tensor_index_.emplace(t.name, g.tensors_.size()).second) {
      r.error(where + " appears twice");
    }
    uint32_t n_dims = r.read<uint32_t>("dimension count of " + where);
    if (n_dims < 1 || n_dims > kMaxTensorDims) {
      r.error(where + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    }
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>("shape of " + where);
      if (ne == 0 || ne > uint64_t(INT64_MAX)) {
        r.error(where + " has dimension " + std::to_string(ne) + "; dimensions must be positive");
      }
      t.shape[n_dims - 1 - d] = int64_t(ne);  // ne[0] is fastest: it becomes the last dim
    }
    uint32_t type = r.read<uint32_t>("type of " + where);
    if (type == kGgmlF32)
      t.dtype = DType::kF32;
    else if (type == kGgmlF16)
      t.dtype = DType::kF16;
    else if (type == kGgmlBF16)
      t.dtype = DType::kBF16;
    else {
      fail(ErrorKind::kUnsupported, "`" + source + "`: " + where + " has type " +
                                        ggml_type_name(type) + " (" + std::to_string(type) +
                                        "); only F32, F16 and BF16 tensors are supported "
                                        "(quantized GGUF types are not yet)");
    }
    uint64_t numel = 0, nbytes = 0;
    if (!detail::numel_ok(t.shape, &numel) ||
        !detail::mul_ok(numel, dtype_size(t.dtype), &nbytes)) {
      r.error(where + " shape " + detail::shape_string(t.shape) + " overflows");
    }
    t.nbytes = size_t(nbytes);
    uint64_t off = r.read<uint64_t>("offset of " + where);
    if (off % alignment != 0) {
      r.error(where + " offset " + std::to_string(off) + " is not a multiple of the alignment " +
              std::to_string(alignment));
    }
    rel_offsets.push_back(off);
    g.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const uint64_t data_start = (uint64_t(r.pos()) + alignment - 1) / alignment * alignment;
  if (n_tensors > 0 && data_start > size) {
    r.error("truncated file: the tensor data section starts past the end of the file");
  }
  const uint64_t data_size = n_tensors > 0 ? size - data_start : 0;
  for (size_t i = 0; i < g.tensors_.size(); ++i) {
    GgufTensorInfo& t = g.tensors_[i];
    if (rel_offsets[i] > data_size || t.nbytes > data_size - rel_offsets[i]) {
      fail(ErrorKind::kFormat, "`" + source + "`: tensor `" + t.name + "` (" +
                                   std::to_string(t.nbytes) + " bytes at data offset " +
                                   std::to_string(rel_offsets[i]) +
                                   ") runs past the end of the file (truncated?)");
    }
    t.offset = size_t(data_start + rel_offsets[i]);
  }
  // No two tensors may share bytes.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : g.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset) {
      fail(ErrorKind::kFormat, "`" + source + "`: tensors `" + by_offset[i - 1]->name + "` and `" +
                                   by_offset[i]->name + "` overlap");
    }
  }
  return g;
}

GgufFile GgufFile::open(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  GgufFile g = parse(file->data(), file->size(), path);
  g.file_ = std::move(file);
  return g;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(const GgufTensorInfo& info) const {
  BITEXACT_CHECK(info.offset + info.nbytes <= size_, "GGUF tensor info from another file");
  return detail::mapped_view(base_ + info.offset, info.dtype, info.shape);
}

}  // namespace bitexact::io
