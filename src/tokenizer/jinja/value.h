// The dynamic value of the Jinja interpreter: Python's None/bool/int/float/str/list/tuple/dict plus
// Jinja's Undefined, namespaces and callables, with Python's printing, truthiness and equality.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace bitexact::tok::jinja {

class Evaluator;
struct Value;

enum class Kind {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kTuple,
  kDict,
  kNamespace,
  kCallable
};

using ValueList = std::vector<Value>;
using KwArgs = std::vector<std::pair<std::string, Value>>;
using NativeFn = std::function<Value(Evaluator&, ValueList& args, KwArgs& kwargs)>;

struct Dict;

struct Value {
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                  // kString; kUndefined: what was looked up, for errors
  std::shared_ptr<ValueList> items;  // kList, kTuple (treated as immutable once built)
  std::shared_ptr<Dict> dict;        // kDict (immutable once built), kNamespace (mutable)
  std::shared_ptr<NativeFn> fn;      // kCallable
  // Nesting depth of containers and whether a namespace is inside: capped/refused on construction
  // so that printing, comparing and destroying values cannot recurse without bound or form cycles.
  uint32_t depth = 0;
  bool holds_namespace = false;

  static Value undefined(std::string hint = {});
  static Value none();
  static Value from_bool(bool b);
  static Value from_int(int64_t i);
  static Value from_float(double f);
  static Value from_string(std::string s);
  static Value list(ValueList v);
  static Value tuple(ValueList v);
  static Value from_dict(Dict d);
  static Value function(NativeFn f);
  static Value namespace_object(Dict d);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const {
    return kind == Kind::kBool || kind == Kind::kInt || kind == Kind::kFloat;
  }
  bool is_sequence() const { return kind == Kind::kList || kind == Kind::kTuple; }
  bool is_dict() const { return kind == Kind::kDict; }

  bool truthy() const;
  std::string type_name() const;  // Python's type name, for error messages
};

// Insertion-ordered map, as Python's dict. Chat dicts are small, so lookups scan.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;
  void set(const Value& key, Value value);
};

bool equals(const Value& a, const Value& b);  // Python ==, 1 == 1.0 == True
int compare(const Value& a,
            const Value& b);          // Python <, for numbers, strings and sequences; throws
std::string to_str(const Value& v);   // Python str() (Undefined prints as "")
std::string to_repr(const Value& v);  // Python repr()
std::string format_float(double f);   // Python repr(float): 1.0, 1e-05, 1e+16

// Python's json.dumps(x, ensure_ascii, indent, separators, sort_keys) as transformers' tojson calls
// it.
struct JsonOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // one level of indentation when has_indent
  bool has_separators = false;
  std::string item_sep, key_sep;
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);

Value from_json(const nlohmann::ordered_json& j);

inline constexpr uint32_t kMaxValueDepth = 256;

// Python string helpers on UTF-8 text: code points, str.isspace() and its strip.
std::vector<char32_t> utf8_decode(const std::string& s);
std::string utf8_encode(const std::vector<char32_t>& cps);
void utf8_append(std::string& out, char32_t cp);
bool is_py_space(char32_t cp);
std::string py_strip(const std::string& s, bool left, bool right, const Value& chars);

}  // namespace bitexact::tok::jinja
