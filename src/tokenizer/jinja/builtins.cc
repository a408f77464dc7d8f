// Jinja's builtin tests (`x is defined`, `x is string`...) and the globals transformers' chat
// environment defines: range, dict, namespace, raise_exception, strftime_now.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <ctime>

#include "core/error.h"

namespace bitexact::tok::jinja {

static const char* kTests[] = {"defined",     "undefined", "none",        "string",   "mapping",
                               "iterable",    "sequence",  "number",      "integer",  "float",
                               "boolean",     "true",      "false",       "callable", "eq",
                               "equalto",     "==",        "ne",          "!=",       "lt",
                               "lessthan",    "<",         "le",          "<=",       "gt",
                               "greaterthan", ">",         "ge",          ">=",       "in",
                               "odd",         "even",      "divisibleby", "sameas",   "lower",
                               "upper"};

bool is_known_test(const std::string& name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

bool apply_test(Evaluator&, const std::string& t, const Value& v, ValueList& a) {
  Kind k = v.kind;
  if (t == "defined") return k != Kind::kUndefined;
  if (t == "undefined") return k == Kind::kUndefined;
  if (t == "none") return k == Kind::kNone;
  if (t == "string") return k == Kind::kString;
  if (t == "mapping") return k == Kind::kDict;
  // Jinja's Undefined is iterable and has len() and __getitem__, so it passes both of these.
  if (t == "iterable" || t == "sequence")
    return k == Kind::kUndefined || k == Kind::kString || k == Kind::kList || k == Kind::kTuple ||
           k == Kind::kDict;
  if (t == "number") return v.is_number();
  if (t == "integer") return k == Kind::kInt;
  if (t == "float") return k == Kind::kFloat;
  if (t == "boolean") return k == Kind::kBool;
  if (t == "true") return k == Kind::kBool && v.boolean;
  if (t == "false") return k == Kind::kBool && !v.boolean;
  if (t == "callable") return k == Kind::kCallable;
  if (t == "lower" || t == "upper") {
    std::string s = to_str(v);
    CaseMap same = t == "lower" ? CaseMap::kLower : CaseMap::kUpper;
    CaseMap other = t == "lower" ? CaseMap::kUpper : CaseMap::kLower;
    return map_case(s, same) == s && map_case(s, other) != s;
  }
  if (t == "odd" || t == "even") {
    int64_t i = int_arg(v, "odd/even operand");
    return (((i % 2) + 2) % 2 == 1) == (t == "odd");
  }
  if (a.empty()) fail(ErrorKind::kInvalidArgument, "test '" + t + "' needs an argument");
  const Value& o = a[0];
  if (t == "eq" || t == "equalto" || t == "==") return equals(v, o);
  if (t == "ne" || t == "!=") return !equals(v, o);
  if (t == "sameas") {
    if (v.is_none() || o.is_none() || k == Kind::kBool || o.kind == Kind::kBool)
      return k == o.kind && equals(v, o);
    return k == o.kind && (v.items ? v.items == o.items : v.dict ? v.dict == o.dict : equals(v, o));
  }
  if (t == "in") return contains(o, v);
  if (t == "divisibleby") {
    int64_t d = int_arg(o, "divisor");
    if (d == 0) fail(ErrorKind::kInvalidArgument, "integer division or modulo by zero");
    return int_arg(v, "divisibleby operand") % d == 0;
  }
  int c = compare(v, o);
  if (t == "lt" || t == "lessthan" || t == "<") return c < 0;
  if (t == "le" || t == "<=") return c <= 0;
  if (t == "gt" || t == "greaterthan" || t == ">") return c > 0;
  if (t == "ge" || t == ">=") return c >= 0;
  fail(ErrorKind::kInvalidArgument, "No test named '" + t + "'.");
}

static Value dict_from_args(ValueList& a, KwArgs& kw, const char* what) {
  Dict d;
  if (a.size() > 1)
    fail(ErrorKind::kInvalidArgument,
         std::string(what) + " expected at most 1 positional argument");
  if (!a.empty()) {
    if (a[0].is_dict()) {
      d = *a[0].dict;
    } else if (a[0].is_sequence()) {
      for (const Value& pair : *a[0].items) {
        if (!pair.is_sequence() || pair.items->size() != 2)
          fail(ErrorKind::kInvalidArgument,
               std::string(what) + ": sequence elements must be pairs");
        d.set((*pair.items)[0], (*pair.items)[1]);
      }
    } else {
      fail(ErrorKind::kInvalidArgument,
           std::string(what) + ": argument must be a mapping or a list of pairs");
    }
  }
  for (auto& [k, v] : kw) d.set(Value::from_string(k), v);
  return Value::from_dict(std::move(d));
}

void add_builtin_globals(Dict& g) {
  auto def = [&](const char* name, NativeFn fn) {
    g.set(Value::from_string(name), Value::function(std::move(fn)));
  };
  def("range", [](Evaluator& ev, ValueList& a, KwArgs&) {
    if (a.empty() || a.size() > 3)
      fail(ErrorKind::kInvalidArgument, "range expected 1 to 3 arguments");
    int64_t start = 0, stop, step = 1;
    if (a.size() == 1) {
      stop = int_arg(a[0], "range stop");
    } else {
      start = int_arg(a[0], "range start");
      stop = int_arg(a[1], "range stop");
      if (a.size() == 3) step = int_arg(a[2], "range step");
    }
    if (step == 0) fail(ErrorKind::kInvalidArgument, "range() arg 3 must not be zero");
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      // The sandbox's MAX_RANGE.
      if (out.size() >= 100000)
        fail(ErrorKind::kInvalidArgument,
             "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      out.push_back(Value::from_int(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    ev.step(out.size());
    return Value::list(std::move(out));
  });
  def("dict", [](Evaluator&, ValueList& a, KwArgs& kw) { return dict_from_args(a, kw, "dict"); });
  def("namespace", [](Evaluator&, ValueList& a, KwArgs& kw) {
    Value d = dict_from_args(a, kw, "namespace");
    for (const auto& [k, v] : d.dict->entries)
      if (k.is_string() && !k.text.empty() && k.text[0] == '_')
        fail(
            ErrorKind::kInvalidArgument,
            "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" +
                k.text + "'");
    return Value::namespace_object(*d.dict);
  });
  def("raise_exception", [](Evaluator&, ValueList& a, KwArgs& kw) -> Value {
    static const Value kNone = Value::none();
    fail(ErrorKind::kInvalidArgument, to_str(arg(a, kw, 0, "message", kNone)));
  });
  def("strftime_now", [](Evaluator&, ValueList& a, KwArgs& kw) {
    static const Value kNone = Value::none();
    std::string fmt = string_arg(arg(a, kw, 0, "format", kNone), "strftime_now format");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = fmt.size() < 200 ? std::strftime(buf, sizeof buf, fmt.c_str(), &tm) : 0;
    return Value::from_string(std::string(buf, n));
  });
}

}  // namespace bitexact::tok::jinja
