// Checked JSON field access for config.json / generation_config.json (see config_fields.h).
#include "io/config_fields.h"

#include <cmath>

#include "core/error.h"

namespace bitexact::io::detail {

using nlohmann::json;

json parse_json_text(const std::string& text, const std::string& source) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(ErrorKind::kFormat, source + ": not valid JSON");
  if (!j.is_object())
    fail(ErrorKind::kFormat, source + ": must be a JSON object, not " + j.type_name());
  return j;
}

namespace {

// A JSON integer (not a float, not a bool) that fits in int64.
bool as_int(const json& v, int64_t* out) {
  if (!v.is_number_integer()) return false;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) return false;
    *out = int64_t(u);
    return true;
  }
  *out = v.get<int64_t>();
  return true;
}

bool as_number(const json& v, double* out) {
  if (!v.is_number()) return false;
  *out = v.get<double>();
  return std::isfinite(*out);
}

}  // namespace

std::string Fields::name(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

const json* Fields::get(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

void Fields::bad(const std::string& key, const std::string& must_be) const {
  fail(ErrorKind::kFormat, source_ + ": field `" + name(key) + "` must be " + must_be);
}

int64_t Fields::positive_int(const std::string& key) const {
  const json* v = get(key);
  if (!v) fail(ErrorKind::kFormat, source_ + ": field `" + name(key) + "` is missing");
  int64_t i;
  if (!as_int(*v, &i) || i <= 0) bad(key, "a positive integer");
  return i;
}

int64_t Fields::positive_int_or(const std::string& key, int64_t fallback) const {
  return get(key) ? positive_int(key) : fallback;
}

std::optional<int64_t> Fields::optional_int(const std::string& key) const {
  const json* v = get(key);
  if (!v) return std::nullopt;
  int64_t i;
  if (!as_int(*v, &i) || i < 0) bad(key, "a non-negative integer");
  return i;
}

double Fields::positive_number(const std::string& key) const {
  const json* v = get(key);
  if (!v) fail(ErrorKind::kFormat, source_ + ": field `" + name(key) + "` is missing");
  double d;
  if (!as_number(*v, &d) || !(d > 0)) bad(key, "a positive number");
  return d;
}

double Fields::positive_number_or(const std::string& key, double fallback) const {
  return get(key) ? positive_number(key) : fallback;
}

std::optional<double> Fields::optional_number(const std::string& key) const {
  const json* v = get(key);
  if (!v) return std::nullopt;
  double d;
  if (!as_number(*v, &d)) bad(key, "a finite number");
  return d;
}

std::string Fields::string_field(const std::string& key) const {
  const json* v = get(key);
  if (!v) fail(ErrorKind::kFormat, source_ + ": field `" + name(key) + "` is missing");
  if (!v->is_string()) bad(key, "a string");
  return v->get<std::string>();
}

bool Fields::bool_or(const std::string& key, bool fallback) const {
  const json* v = get(key);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(key, "true or false");
  return v->get<bool>();
}

std::vector<int64_t> Fields::int_or_int_list(const std::string& key) const {
  const json* v = get(key);
  if (!v) return {};
  int64_t i;
  if (as_int(*v, &i)) {
    if (i < 0) bad(key, "a non-negative integer or a list of them");
    return {i};
  }
  if (!v->is_array()) bad(key, "a non-negative integer or a list of them");
  return int_list_or_empty(key);
}

std::vector<int64_t> Fields::int_list_or_empty(const std::string& key) const {
  const json* v = get(key);
  if (!v) return {};
  if (!v->is_array()) bad(key, "a list of non-negative integers");
  std::vector<int64_t> out;
  for (const json& e : *v) {
    int64_t i;
    if (!as_int(e, &i) || i < 0) bad(key, "a list of non-negative integers");
    out.push_back(i);
  }
  return out;
}

}  // namespace bitexact::io::detail
