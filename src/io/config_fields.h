// Typed, checked access to the fields of a JSON config object (internal to src/io). Every getter
// names the file and field in its error, e.g. "config.json: field `num_key_value_heads` must be a
// positive integer", so a user can fix the file without reading code.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bitexact::io::detail {

// Parses `text` as a JSON object; Error(kFormat) naming `source` otherwise.
nlohmann::json parse_json_text(const std::string& text, const std::string& source);

class Fields {
 public:
  // `prefix` names a nested object in messages ("rope_scaling" -> `rope_scaling.factor`).
  Fields(const nlohmann::json& j, const std::string& source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  const std::string& source() const { return source_; }
  // The field's value, or nullptr when it is absent or JSON null (both mean "not given").
  const nlohmann::json* get(const std::string& key) const;
  [[noreturn]] void bad(const std::string& key, const std::string& must_be) const;

  int64_t positive_int(const std::string& key) const;
  int64_t positive_int_or(const std::string& key, int64_t fallback) const;
  std::optional<int64_t> optional_int(const std::string& key) const;  // non-negative
  double positive_number(const std::string& key) const;
  double positive_number_or(const std::string& key, double fallback) const;
  std::optional<double> optional_number(const std::string& key) const;  // finite
  std::string string_field(const std::string& key) const;
  bool bool_or(const std::string& key, bool fallback) const;
  // An integer or a list of them (eos_token_id); absent -> empty. Entries non-negative.
  std::vector<int64_t> int_or_int_list(const std::string& key) const;
  std::vector<int64_t> int_list_or_empty(const std::string& key) const;

 private:
  std::string name(const std::string& key) const;
  const nlohmann::json& j_;
  const std::string& source_;
  std::string prefix_;
};

}  // namespace bitexact::io::detail
