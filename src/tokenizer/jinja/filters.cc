// Jinja's builtin filters and tests that chat templates use, with transformers' tojson override
// (json.dumps with ensure_ascii=False, no HTML escaping, keys in insertion order).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"

namespace bitexact::tok::jinja {
namespace {

const Value kNone = Value::none();
const Value kFalse = Value::from_bool(false);
const Value kEmpty = Value::from_string("");

// Jinja's attribute paths for map/selectattr/sort: "a.b.0" looks up item by item.
Value attribute_of(Evaluator& ev, Value v, const Value& path) {
  if (!path.is_string()) return ev.get_item(v, path);
  std::string p = path.text;
  size_t pos = 0;
  while (true) {
    size_t dot = p.find('.', pos);
    std::string part = p.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && part.size() < 18;
    v = ev.get_item(v, digits ? Value::from_int(std::stoll(part)) : Value::from_string(part));
    if (dot == std::string::npos) return v;
    if (v.is_undefined()) undefined_error(v);
    pos = dot + 1;
  }
}

Value tojson(const Value& v, ValueList& a, KwArgs& kw) {
  JsonOptions o;
  o.ensure_ascii = arg(a, kw, 0, "ensure_ascii", kFalse).truthy();
  const Value& indent = arg(a, kw, 1, "indent", kNone);
  if (indent.kind == Kind::kInt || indent.kind == Kind::kBool) {
    o.has_indent = true;
    o.indent = std::string(size_t(std::clamp<int64_t>(int_arg(indent, "indent"), 0, 64)), ' ');
  } else if (indent.is_string()) {
    o.has_indent = true;
    o.indent = indent.text;
  } else if (!indent.is_none()) {
    fail(ErrorKind::kInvalidArgument, "tojson: indent must be an int, a str or None");
  }
  const Value& seps = arg(a, kw, 2, "separators", kNone);
  if (!seps.is_none()) {
    if (!seps.is_sequence() || seps.items->size() != 2)
      fail(ErrorKind::kInvalidArgument,
           "tojson: separators must be a pair (item_separator, key_separator)");
    o.has_separators = true;
    o.item_sep = string_arg((*seps.items)[0], "item separator");
    o.key_sep = string_arg((*seps.items)[1], "key separator");
  }
  o.sort_keys = arg(a, kw, 3, "sort_keys", kFalse).truthy();
  return Value::from_string(to_json(v, o));
}

// Jinja's select/reject/selectattr/rejectattr: keep items whose test (or truthiness) matches
// `keep`.
Value select(Evaluator& ev, const Value& input, ValueList& a, bool by_attr, bool keep) {
  size_t first_arg = by_attr ? 1 : 0;
  if (by_attr && a.empty())
    fail(ErrorKind::kInvalidArgument, "selectattr/rejectattr need an attribute name");
  ValueList out;
  ValueList test_args(a.begin() + std::min(a.size(), first_arg + 1), a.end());
  for (const Value& item : ev.iterate(input)) {
    ev.step();
    Value v = by_attr ? attribute_of(ev, item, a[0]) : item;
    bool ok = a.size() > first_arg ? ev.test(string_arg(a[first_arg], "test name"), v, test_args)
                                   : v.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value map_filter(Evaluator& ev, const Value& input, ValueList& a, KwArgs& kw) {
  ValueList out;
  const Value attribute = arg(a, kw, 99, "attribute", Value());
  for (const Value& item : ev.iterate(input)) {
    ev.step();
    if (!attribute.is_undefined()) {
      Value v = attribute_of(ev, item, attribute);
      out.push_back(v.is_undefined() ? arg(a, kw, 99, "default", v) : v);
    } else {
      if (a.empty()) fail(ErrorKind::kInvalidArgument, "map needs a filter name or attribute=");
      ValueList rest(a.begin() + 1, a.end());
      KwArgs no_kw;
      out.push_back(ev.filter(string_arg(a[0], "filter name"), item, rest, no_kw));
    }
  }
  return Value::list(std::move(out));
}

Value sort_key(Evaluator& ev, const Value& item, const Value& attribute, bool case_sensitive) {
  Value k = attribute.is_none() ? item : attribute_of(ev, item, attribute);
  if (!case_sensitive && k.is_string()) k.text = map_case(k.text, CaseMap::kLower);
  return k;
}

Value int_filter(const Value& v, const Value& dflt) {
  if (v.kind == Kind::kInt) return v;
  if (v.kind == Kind::kBool) return Value::from_int(v.boolean);
  double d;
  if (v.kind == Kind::kFloat) {
    d = v.real;
  } else if (v.is_string()) {
    std::string s = py_strip(v.text, true, true, kNone);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    char* end = nullptr;
    errno = 0;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && *end == '\0' && errno == 0) return Value::from_int(i);
    d = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0') return dflt;
  } else {
    return dflt;
  }
  if (!(std::fabs(d) < 9.2e18)) return dflt;
  return Value::from_int(int64_t(d));
}

}  // namespace

static const char* kFilters[] = {
    "tojson",  "length",  "count",  "trim",       "items",      "list",       "first",  "last",
    "join",    "default", "d",      "upper",      "lower",      "capitalize", "title",  "replace",
    "string",  "int",     "float",  "selectattr", "rejectattr", "select",     "reject", "map",
    "reverse", "sort",    "unique", "abs",        "round",      "sum",        "min",    "max",
    "indent",  "safe",    "escape", "e",          "wordcount"};

bool is_known_filter(const std::string& name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

Value apply_filter(Evaluator& ev, const std::string& f, Value v, ValueList& a, KwArgs& kw) {
  if (f == "tojson") return tojson(v, a, kw);
  if (f == "length" || f == "count") {
    switch (v.kind) {
      case Kind::kUndefined:
        return Value::from_int(0);
      case Kind::kString:
        return Value::from_int(int64_t(utf8_decode(v.text).size()));
      case Kind::kList:
      case Kind::kTuple:
        return Value::from_int(int64_t(v.items->size()));
      case Kind::kDict:
      case Kind::kNamespace:
        return Value::from_int(int64_t(v.dict->entries.size()));
      default:
        fail(ErrorKind::kInvalidArgument, "object of type '" + v.type_name() + "' has no len()");
    }
  }
  if (f == "default" || f == "d") {
    bool boolean = arg(a, kw, 1, "boolean", kFalse).truthy();
    return (v.is_undefined() || (boolean && !v.truthy())) ? arg(a, kw, 0, "default_value", kEmpty)
                                                          : v;
  }
  if (f == "safe") return v;
  if (f == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) fail(ErrorKind::kInvalidArgument, "Can only get item pairs from a mapping.");
    ValueList out;
    for (const auto& [k, val] : v.dict->entries) out.push_back(Value::tuple({k, val}));
    return Value::list(std::move(out));
  }
  if (f == "list") return Value::list(ev.iterate(v));
  if (f == "first" || f == "last") {
    ValueList items = ev.iterate(v);
    if (items.empty()) return Value::undefined("No " + f + " item, sequence was empty.");
    return f == "first" ? items.front() : items.back();
  }
  if (f == "reverse") {
    if (v.is_string()) {
      auto cps = utf8_decode(v.text);
      std::reverse(cps.begin(), cps.end());
      return Value::from_string(utf8_encode(cps));
    }
    ValueList items = ev.iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (f == "join") {
    const Value& sep = arg(a, kw, 0, "d", kEmpty);
    const Value& attribute = arg(a, kw, 1, "attribute", kNone);
    std::string out;
    bool first = true;
    for (const Value& item : ev.iterate(v)) {
      ev.step();
      if (!first) out += to_str(sep);
      out += to_str(attribute.is_none() ? item : attribute_of(ev, item, attribute));
      ev.check_size(out.size());
      first = false;
    }
    return Value::from_string(std::move(out));
  }
  if (f == "selectattr" || f == "rejectattr") return select(ev, v, a, true, f == "selectattr");
  if (f == "select" || f == "reject") return select(ev, v, a, false, f == "select");
  if (f == "map") return map_filter(ev, v, a, kw);
  if (f == "sort" || f == "unique" || f == "min" || f == "max") {
    bool reverse = f == "sort" && arg(a, kw, 0, "reverse", kFalse).truthy();
    bool case_sensitive = arg(a, kw, f == "sort" ? 1 : 0, "case_sensitive", kFalse).truthy();
    const Value& attribute = arg(a, kw, f == "sort" ? 2 : 1, "attribute", kNone);
    ValueList items = ev.iterate(v);
    ev.step(items.size());
    std::vector<std::pair<Value, Value>> keyed;
    for (const Value& item : items)
      keyed.emplace_back(sort_key(ev, item, attribute, case_sensitive), item);
    if (f == "unique") {
      ValueList out, seen;
      for (auto& entry : keyed) {
        const Value& k = entry.first;
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); }))
          continue;
        seen.push_back(k);
        out.push_back(entry.second);
      }
      return Value::list(std::move(out));
    }
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      return reverse ? compare(y.first, x.first) < 0 : compare(x.first, y.first) < 0;
    });
    if (f == "min" || f == "max") {
      if (keyed.empty())
        return Value::undefined("No " + std::string(f == "min" ? "smallest" : "largest") +
                                " item, sequence was empty.");
      return f == "min" ? keyed.front().second : keyed.back().second;
    }
    ValueList out;
    for (auto& kv : keyed) out.push_back(kv.second);
    return Value::list(std::move(out));
  }
  if (f == "sum") {
    const Value& attribute = arg(a, kw, 0, "attribute", kNone);
    Value total = arg(a, kw, 1, "start", Value::from_int(0));
    for (const Value& item : ev.iterate(v)) {
      ev.step();
      Value x = attribute.is_none() ? item : attribute_of(ev, item, attribute);
      if (!total.is_number() || !x.is_number())
        fail(ErrorKind::kInvalidArgument, "sum: items must be numbers");
      total = total.kind == Kind::kFloat || x.kind == Kind::kFloat
                  ? Value::from_float(
                        (total.kind == Kind::kFloat ? total.real
                                                    : double(total.integer + total.boolean)) +
                        (x.kind == Kind::kFloat ? x.real : double(x.integer + x.boolean)))
                  : Value::from_int(total.integer + total.boolean + x.integer + x.boolean);
    }
    return total;
  }
  if (f == "int") return int_filter(v, arg(a, kw, 0, "default", Value::from_int(0)));
  if (f == "float") {
    if (v.kind == Kind::kFloat) return v;
    if (v.kind == Kind::kInt || v.kind == Kind::kBool)
      return Value::from_float(double(v.integer + v.boolean));
    if (v.is_string()) {
      std::string s = py_strip(v.text, true, true, kNone);
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0') return Value::from_float(d);
    }
    return arg(a, kw, 0, "default", Value::from_float(0.0));
  }
  if (f == "abs") {
    if (v.kind == Kind::kFloat) return Value::from_float(std::fabs(v.real));
    if (v.kind == Kind::kInt && v.integer != INT64_MIN)
      return Value::from_int(std::llabs(v.integer));
    if (v.kind == Kind::kBool) return Value::from_int(v.boolean);
    fail(ErrorKind::kInvalidArgument, "bad operand type for abs(): '" + v.type_name() + "'");
  }
  if (f == "round") {
    if (!v.is_number()) fail(ErrorKind::kInvalidArgument, "round: value must be a number");
    double x = v.kind == Kind::kFloat ? v.real : double(v.integer + v.boolean);
    double scale = std::pow(
        10.0, double(int_arg(arg(a, kw, 0, "precision", Value::from_int(0)), "precision")));
    std::string method = to_str(arg(a, kw, 1, "method", Value::from_string("common")));
    double y = x * scale;
    y = method == "ceil" ? std::ceil(y) : method == "floor" ? std::floor(y) : std::nearbyint(y);
    return Value::from_float(y / scale);
  }
  if (f == "wordcount") {
    std::string s = to_str(v);
    int64_t n = 0;
    bool in_word = false;
    for (char32_t c : utf8_decode(s)) {
      bool w = c == '_' || (c < 128 ? std::isalnum(int(c)) != 0 : !is_py_space(c));
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value::from_int(n);
  }
  // The rest take the value as text (Jinja's soft_str: Undefined is "").
  std::string s = to_str(v);
  if (f == "trim")
    return Value::from_string(py_strip(s, true, true, arg(a, kw, 0, "chars", kNone)));
  if (f == "upper") return Value::from_string(map_case(s, CaseMap::kUpper));
  if (f == "lower") return Value::from_string(map_case(s, CaseMap::kLower));
  if (f == "capitalize") return Value::from_string(map_case(s, CaseMap::kCapitalize));
  if (f == "string") return v.is_string() ? v : Value::from_string(s);
  if (f == "title") {  // Jinja's own title: words start after [-\s({[<], the rest is lowered
    std::string out, word;
    auto flush = [&] {
      if (!word.empty()) out += map_case(word, CaseMap::kCapitalize);
      word.clear();
    };
    for (char32_t c : utf8_decode(s)) {
      if (is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<') {
        flush();
        utf8_append(out, c);
      } else {
        utf8_append(word, c);
      }
    }
    flush();
    return Value::from_string(std::move(out));
  }
  if (f == "replace") {
    const Value& count = arg(a, kw, 2, "count", kNone);
    std::string out =
        py_replace(s, to_str(arg(a, kw, 0, "old", kEmpty)), to_str(arg(a, kw, 1, "new", kEmpty)),
                   count.is_none() ? -1 : int_arg(count, "count"));
    ev.check_size(out.size());
    return Value::from_string(std::move(out));
  }
  if (f == "escape" || f == "e") {
    std::string out;
    for (char c : s) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return Value::from_string(std::move(out));
  }
  if (f == "indent") {
    const Value width = arg(a, kw, 0, "width", Value::from_int(4));
    std::string pad =
        width.is_string()
            ? width.text
            : std::string(size_t(std::clamp<int64_t>(int_arg(width, "width"), 0, 1024)), ' ');
    bool first = arg(a, kw, 1, "first", kFalse).truthy(),
         blank = arg(a, kw, 2, "blank", kFalse).truthy();
    std::vector<std::string> lines;  // str.splitlines() on s + "\n"
    std::string cur;
    auto cps = utf8_decode(s + "\n");
    for (size_t i = 0; i < cps.size(); ++i) {
      char32_t c = cps[i];
      if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e ||
          c == 0x85 || c == 0x2028 || c == 0x2029) {
        if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
        lines.push_back(std::move(cur));
        cur.clear();
      } else {
        utf8_append(cur, c);
      }
    }
    std::string out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i)
      out += "\n" + ((blank || !lines[i].empty()) ? pad : "") + lines[i];
    if (first) out = pad + out;
    ev.check_size(out.size());
    return Value::from_string(std::move(out));
  }
  fail(ErrorKind::kInvalidArgument, "No filter named '" + f + "'.");
}

}  // namespace bitexact::tok::jinja
