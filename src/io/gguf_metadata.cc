// Typed access to GGUF metadata: each getter names the file and key when the key is missing or
// holds another type, so a model loader can simply ask for what it needs.
#include "core/error.h"
#include "io/gguf.h"

namespace bitexact::io {

namespace {

const char* gguf_type_name(uint32_t t) {
  static const char* const kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                       "int32",  "float32", "bool",   "string", "array",
                                       "uint64", "int64",   "float64"};
  return t < 13 ? kNames[t] : "unknown";
}

[[noreturn]] void wrong_type(const std::string& source, std::string_view key, const GgufValue& v,
                             const char* expected) {
  fail(ErrorKind::kFormat, "`" + source + "`: metadata `" + std::string(key) + "` is a " +
                               gguf_type_name(v.type) + ", expected " + expected);
}

// An integer value as int64, or false when it is not an integer (or does not fit).
bool as_int(const GgufValue& v, int64_t* out) {
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u > uint64_t(INT64_MAX)) return false;
    *out = int64_t(*u);
    return true;
  }
  if (const auto* i = std::get_if<int64_t>(&v.v)) {
    *out = *i;
    return true;
  }
  return false;
}

bool as_float(const GgufValue& v, double* out) {
  if (const auto* d = std::get_if<double>(&v.v)) {
    *out = *d;
    return true;
  }
  int64_t i;
  if (as_int(v, &i)) {
    *out = double(i);
    return true;
  }
  return false;
}

}  // namespace

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {

const GgufValue& require(const GgufFile& g, const std::string& source, std::string_view key) {
  const GgufValue* v = g.find(key);
  if (!v)
    fail(ErrorKind::kFormat,
         "`" + source + "`: metadata key `" + std::string(key) + "` is missing");
  return *v;
}

const GgufValue::Array& require_array(const GgufFile& g, const std::string& source,
                                      std::string_view key, const char* expected) {
  const GgufValue& v = require(g, source, key);
  const auto* a = std::get_if<GgufValue::Array>(&v.v);
  if (!a) wrong_type(source, key, v, expected);
  return *a;
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(*this, source_, key);
  const auto* s = std::get_if<std::string>(&v.v);
  if (!s) wrong_type(source_, key, v, "a string");
  return *s;
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = require(*this, source_, key);
  int64_t i;
  if (!as_int(v, &i)) wrong_type(source_, key, v, "an integer");
  return i;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = require(*this, source_, key);
  double d;
  if (!as_float(v, &d)) wrong_type(source_, key, v, "a number");
  return d;
}

int64_t GgufFile::get_int_or(std::string_view key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}

double GgufFile::get_float_or(std::string_view key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const auto& arr = require_array(*this, source_, key, "an array of strings");
  std::vector<std::string> out;
  out.reserve(arr.size());
  for (const GgufValue& e : arr) {
    const auto* s = std::get_if<std::string>(&e.v);
    if (!s) wrong_type(source_, key, e, "an array of strings");
    out.push_back(*s);
  }
  return out;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const auto& arr = require_array(*this, source_, key, "an array of numbers");
  std::vector<float> out;
  out.reserve(arr.size());
  for (const GgufValue& e : arr) {
    double d;
    if (!as_float(e, &d)) wrong_type(source_, key, e, "an array of numbers");
    out.push_back(float(d));
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const auto& arr = require_array(*this, source_, key, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(arr.size());
  for (const GgufValue& e : arr) {
    int64_t i;
    if (!as_int(e, &i)) wrong_type(source_, key, e, "an array of integers");
    out.push_back(i);
  }
  return out;
}

}  // namespace bitexact::io
