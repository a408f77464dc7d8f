// Value construction, Python truthiness/equality/ordering, and str()/repr() printing. Printing
// follows CPython exactly (repr(float) is the shortest round-trip form) because templates print it.
#include "tokenizer/jinja/value.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace bitexact::tok::jinja {

const Value* Dict::find(const Value& key) const {
  for (const auto& [k, v] : entries)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* Dict::find(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k.kind == Kind::kString && k.text == key) return &v;
  return nullptr;
}

void Dict::set(const Value& key, Value value) {
  for (auto& [k, v] : entries) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string hint) {
  Value v;
  v.text = std::move(hint);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::from_bool(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.boolean = b;
  return v;
}
Value Value::from_int(int64_t i) {
  Value v;
  v.kind = Kind::kInt;
  v.integer = i;
  return v;
}
Value Value::from_float(double f) {
  Value v;
  v.kind = Kind::kFloat;
  v.real = f;
  return v;
}
Value Value::from_string(std::string s) {
  Value v;
  v.kind = Kind::kString;
  v.text = std::move(s);
  return v;
}
static void track_child(Value& parent, const Value& child) {
  parent.depth = std::max(parent.depth, child.depth + 1);
  parent.holds_namespace =
      parent.holds_namespace || child.holds_namespace || child.kind == Kind::kNamespace;
  if (parent.depth > kMaxValueDepth)
    fail(ErrorKind::kInvalidArgument,
         "value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
}

Value Value::list(ValueList items) {
  Value v;
  v.kind = Kind::kList;
  for (const Value& item : items) track_child(v, item);
  v.items = std::make_shared<ValueList>(std::move(items));
  return v;
}
Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.kind = Kind::kTuple;
  return v;
}
Value Value::from_dict(Dict d) {
  Value v;
  v.kind = Kind::kDict;
  for (const auto& [key, item] : d.entries) {
    track_child(v, key);
    track_child(v, item);
  }
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::namespace_object(Dict d) {
  Value v = from_dict(std::move(d));
  if (v.holds_namespace)
    fail(ErrorKind::kInvalidArgument, "a namespace cannot hold another namespace");
  v.kind = Kind::kNamespace;
  v.depth = 0;
  return v;
}
Value Value::function(NativeFn f) {
  Value v;
  v.kind = Kind::kCallable;
  v.fn = std::make_shared<NativeFn>(std::move(f));
  return v;
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return boolean;
    case Kind::kInt:
      return integer != 0;
    case Kind::kFloat:
      return real != 0.0;
    case Kind::kString:
      return !text.empty();
    case Kind::kList:
    case Kind::kTuple:
      return !items->empty();
    case Kind::kDict:
      return !dict->entries.empty();
    default:
      return true;
  }
}

std::string Value::type_name() const {
  static const char* names[] = {"Undefined", "NoneType", "bool", "int",       "float",   "str",
                                "list",      "tuple",    "dict", "Namespace", "function"};
  return names[static_cast<int>(kind)];
}

static double as_double(const Value& v) {
  return v.kind == Kind::kFloat ? v.real
         : v.kind == Kind::kInt ? double(v.integer)
                                : double(v.boolean);
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::kFloat && b.kind != Kind::kFloat)
      return (a.kind == Kind::kInt ? a.integer : a.boolean) ==
             (b.kind == Kind::kInt ? b.integer : b.boolean);
    return as_double(a) == as_double(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return a.text == b.text;
    case Kind::kList:
    case Kind::kTuple: {
      if (a.items->size() != b.items->size()) return false;
      for (size_t i = 0; i < a.items->size(); ++i)
        if (!equals((*a.items)[i], (*b.items)[i])) return false;
      return true;
    }
    case Kind::kDict: {
      if (a.dict->entries.size() != b.dict->entries.size()) return false;
      for (const auto& [k, v] : a.dict->entries) {
        const Value* other = b.dict->find(k);
        if (!other || !equals(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.dict == b.dict && a.fn == b.fn;  // identity
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::kInt && b.kind == Kind::kInt)
      return (a.integer > b.integer) - (a.integer < b.integer);
    double x = as_double(a), y = as_double(b);
    return (x > y) - (x < y);
  }
  if (a.is_string() && b.is_string())
    return a.text.compare(b.text) < 0 ? -1 : a.text == b.text ? 0 : 1;
  if (a.kind == b.kind && a.is_sequence()) {
    size_t n = std::min(a.items->size(), b.items->size());
    for (size_t i = 0; i < n; ++i)
      if (!equals((*a.items)[i], (*b.items)[i])) return compare((*a.items)[i], (*b.items)[i]);
    return (a.items->size() > n) - (b.items->size() > n);
  }
  fail(ErrorKind::kInvalidArgument,
       "cannot compare '" + a.type_name() + "' with '" + b.type_name() + "'");
}

std::string format_float(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  // Shortest round-trip digits in scientific form, then laid out the way CPython's repr does.
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exp10 = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = neg ? "-" : "";
  if (exp10 < -4 || exp10 >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    std::snprintf(buf, sizeof buf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return out + buf;
  }
  if (exp10 < 0) return out + "0." + std::string(-exp10 - 1, '0') + digits;
  if (digits.size() <= size_t(exp10) + 1)
    return out + digits + std::string(exp10 + 1 - digits.size(), '0') + ".0";
  return out + digits.substr(0, exp10 + 1) + "." + digits.substr(exp10 + 1);
}

// Python's str.isprintable(): not a control, format, surrogate, private-use, unassigned or
// separator character, except the ASCII space.
static bool is_printable(char32_t cp) {
  if (cp == ' ') return true;
  if (cp >= 0xdc80 && cp <= 0xdcff) return false;  // an undecodable byte (surrogateescape)
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

static std::string repr_string(const std::string& s) {
  char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t cp : utf8_decode(s)) {
    if (cp == char32_t(quote) || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (!is_printable(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof buf,
                    cp < 0x100     ? "\\x%02x"
                    : cp < 0x10000 ? "\\u%04x"
                                   : "\\U%08x",
                    unsigned(cp));
      out += buf;
    } else {
      utf8_append(out, cp);
    }
  }
  return out + quote;
}

std::string to_repr(const Value& v) {
  switch (v.kind) {
    case Kind::kString:
      return repr_string(v.text);
    case Kind::kList:
    case Kind::kTuple: {
      bool tuple = v.kind == Kind::kTuple;
      std::string out = tuple ? "(" : "[";
      for (size_t i = 0; i < v.items->size(); ++i) out += (i ? ", " : "") + to_repr((*v.items)[i]);
      if (tuple && v.items->size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.dict->entries) {
        out += (first ? "" : ", ") + to_repr(k) + ": " + to_repr(val);
        first = false;
      }
      return out + "}";
    }
    default:
      return to_str(v);
  }
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return v.boolean ? "True" : "False";
    case Kind::kInt:
      return std::to_string(v.integer);
    case Kind::kFloat:
      return format_float(v.real);
    case Kind::kString:
      return v.text;
    case Kind::kNamespace:
      return "<Namespace>";
    case Kind::kCallable:
      return "<function>";
    default:
      return to_repr(v);
  }
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::from_bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::from_int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return Value::from_float(double(u));
      return Value::from_int(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::from_float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::from_string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      for (const auto& e : j) items.push_back(from_json(e));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it)
        d.entries.emplace_back(Value::from_string(it.key()), from_json(it.value()));
      return Value::from_dict(std::move(d));
    }
    default:
      fail(ErrorKind::kInvalidArgument, "chat template input: unsupported JSON value (binary)");
  }
}

}  // namespace bitexact::tok::jinja
