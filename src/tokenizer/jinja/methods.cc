// Python methods templates call on values (str.startswith/split/strip..., dict.get/items...,
// list.index...), the `in` operator, and Python's case mapping (through utf8proc).
#include <utf8proc.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"

namespace bitexact::tok::jinja {

std::string map_case(const std::string& s, CaseMap how) {
  std::string out;
  bool prev_cased = false;
  bool first = true;
  for (char32_t cp : utf8_decode(s)) {
    auto c = utf8proc_int32_t(cp);
    auto cat = utf8proc_category(c);
    bool cased =
        cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
    utf8proc_int32_t m = c;
    switch (how) {
      case CaseMap::kUpper:
        m = utf8proc_toupper(c);
        break;
      case CaseMap::kLower:
        m = utf8proc_tolower(c);
        break;
      case CaseMap::kTitle:
        m = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c);
        break;
      case CaseMap::kCapitalize:
        m = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
        break;
    }
    prev_cased = cased;
    first = false;
    utf8_append(out, char32_t(m));
  }
  return out;
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Kind::kUndefined:
      return false;
    case Kind::kString:
      if (!item.is_string())
        fail(ErrorKind::kInvalidArgument,
             "'in <string>' requires string as left operand, not " + item.type_name());
      return container.text.find(item.text) != std::string::npos;
    case Kind::kList:
    case Kind::kTuple:
      return std::any_of(container.items->begin(), container.items->end(),
                         [&](const Value& v) { return equals(v, item); });
    case Kind::kDict:
      return container.dict->find(item) != nullptr;
    default:
      fail(ErrorKind::kInvalidArgument,
           "argument of type '" + container.type_name() + "' is not iterable");
  }
}

const Value& arg(ValueList& args, KwArgs& kwargs, size_t i, const char* name, const Value& dflt) {
  if (i < args.size()) return args[i];
  for (auto& [k, v] : kwargs)
    if (k == name) return v;
  return dflt;
}

std::string string_arg(const Value& v, const char* what) {
  if (!v.is_string())
    fail(ErrorKind::kInvalidArgument, std::string(what) + " must be str, not " + v.type_name());
  return v.text;
}

int64_t int_arg(const Value& v, const char* what) {
  if (v.kind == Kind::kInt) return v.integer;
  if (v.kind == Kind::kBool) return v.boolean;
  fail(ErrorKind::kInvalidArgument,
       std::string(what) + " must be an integer, not " + v.type_name());
}

static Value split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none() || sep.is_undefined()) {  // runs of whitespace, ends ignored
    auto cps = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;  // code point ranges
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_py_space(cps[i])) ++i;
      if (i == cps.size()) break;
      size_t b = i;
      while (i < cps.size() && !is_py_space(cps[i])) ++i;
      words.emplace_back(b, i);
    }
    if (maxsplit >= 0 && int64_t(words.size()) >= maxsplit + 1) {  // the remainder stays one word
      if (from_right) {
        size_t k = words.size() - size_t(maxsplit) - 1;
        words[k].first = 0;  // the remainder keeps its leading whitespace
        words.erase(words.begin(), words.begin() + k);
      } else {
        words[size_t(maxsplit)].second = cps.size();  // the remainder keeps its trailing whitespace
        words.resize(size_t(maxsplit) + 1);
      }
    }
    for (auto [b, e] : words)
      parts.push_back(utf8_encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e)));
  } else {
    std::string d = string_arg(sep, "separator");
    if (d.empty()) fail(ErrorKind::kInvalidArgument, "empty separator");
    if (!from_right) {
      size_t pos = 0, hit;
      while ((maxsplit < 0 || int64_t(parts.size()) < maxsplit) &&
             (hit = s.find(d, pos)) != std::string::npos) {
        parts.push_back(s.substr(pos, hit - pos));
        pos = hit + d.size();
      }
      parts.push_back(s.substr(pos));
    } else {
      size_t end = s.size();
      while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
        if (end < d.size()) break;
        size_t hit = s.rfind(d, end - d.size());
        if (hit == std::string::npos) break;
        parts.push_back(s.substr(hit + d.size(), end - hit - d.size()));
        end = hit;
      }
      parts.push_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
  }
  ValueList out;
  for (auto& p : parts) out.push_back(Value::from_string(std::move(p)));
  return Value::list(std::move(out));
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& repl,
                       int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `repl` around every code point
    auto cps = utf8_decode(s);
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += repl;
        ++n;
      }
      if (i < cps.size()) utf8_append(out, cps[i]);
    }
    return out;
  }
  size_t pos = 0, hit;
  int64_t n = 0;
  while ((count < 0 || n < count) && (hit = s.find(old, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out += repl;
    pos = hit + old.size();
    ++n;
  }
  out.append(s, pos);
  return out;
}

static Value string_method(const Value& self, const std::string& name, ValueList& a, KwArgs& kw) {
  const std::string& s = self.text;
  static const Value kNone = Value::none();
  static const Value kMinus1 = Value::from_int(-1);
  if (name == "startswith" || name == "endswith") {
    const Value& p = arg(a, kw, 0, "prefix", kNone);
    ValueList options = p.kind == Kind::kTuple ? *p.items : ValueList{p};
    for (const Value& o : options) {
      std::string x = string_arg(o, name.c_str());
      bool hit = name == "startswith"
                     ? s.compare(0, x.size(), x) == 0
                     : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
      if (hit) return Value::from_bool(true);
    }
    return Value::from_bool(false);
  }
  if (name == "split" || name == "rsplit")
    return split(s, arg(a, kw, 0, "sep", kNone),
                 int_arg(arg(a, kw, 1, "maxsplit", kMinus1), "maxsplit"), name == "rsplit");
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return Value::from_string(
        py_strip(s, name != "rstrip", name != "lstrip", arg(a, kw, 0, "chars", kNone)));
  if (name == "replace")
    return Value::from_string(
        py_replace(s, string_arg(arg(a, kw, 0, "old", kNone), "replace() argument 1"),
                   string_arg(arg(a, kw, 1, "new", kNone), "replace() argument 2"),
                   int_arg(arg(a, kw, 2, "count", kMinus1), "count")));
  if (name == "upper") return Value::from_string(map_case(s, CaseMap::kUpper));
  if (name == "lower") return Value::from_string(map_case(s, CaseMap::kLower));
  if (name == "title") return Value::from_string(map_case(s, CaseMap::kTitle));
  if (name == "capitalize") return Value::from_string(map_case(s, CaseMap::kCapitalize));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    std::string x = string_arg(arg(a, kw, 0, "sub", kNone), name.c_str());
    if (name == "count") {
      if (x.empty()) return Value::from_int(int64_t(utf8_decode(s).size()) + 1);
      int64_t n = 0;
      for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++n;
      return Value::from_int(n);
    }
    size_t p = name[0] == 'r' ? s.rfind(x) : s.find(x);
    if (p == std::string::npos) {
      if (name.find("index") != std::string::npos)
        fail(ErrorKind::kInvalidArgument, "substring not found");
      return Value::from_int(-1);
    }
    return Value::from_int(int64_t(utf8_decode(s.substr(0, p)).size()));
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    const Value& items = arg(a, kw, 0, "iterable", kNone);
    if (!items.is_sequence()) fail(ErrorKind::kInvalidArgument, "str.join() needs a list");
    for (const Value& v : *items.items) {
      if (!first) out += s;
      out += string_arg(v, "sequence item");
      first = false;
    }
    return Value::from_string(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    std::string x = string_arg(arg(a, kw, 0, "affix", kNone), name.c_str());
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0)
      return Value::from_string(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.size() >= x.size() &&
        s.compare(s.size() - x.size(), x.size(), x) == 0)
      return Value::from_string(s.substr(0, s.size() - x.size()));
    return self;
  }
  auto all_of = [&](auto pred) {
    auto cps = utf8_decode(s);
    return Value::from_bool(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred));
  };
  if (name == "isspace") return all_of([](char32_t c) { return is_py_space(c); });
  if (name == "isdigit")
    return all_of([](char32_t c) { return utf8proc_category(c) == UTF8PROC_CATEGORY_ND; });
  if (name == "isalpha")
    return all_of([](char32_t c) {
      auto k = utf8proc_category(c);
      return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
    });
  if (name == "islower")
    return Value::from_bool(map_case(s, CaseMap::kLower) == s && map_case(s, CaseMap::kUpper) != s);
  if (name == "isupper")
    return Value::from_bool(map_case(s, CaseMap::kUpper) == s && map_case(s, CaseMap::kLower) != s);
  fail(ErrorKind::kInternal, "unhandled str method " + name);
}

static const char* kStringMethods[] = {
    "startswith", "endswith", "split",   "rsplit", "strip",        "lstrip",       "rstrip",
    "replace",    "upper",    "lower",   "title",  "capitalize",   "find",         "rfind",
    "index",      "rindex",   "count",   "join",   "removeprefix", "removesuffix", "isspace",
    "isdigit",    "isalpha",  "islower", "isupper"};
// Methods that would mutate: the immutable sandbox refuses them when called.
static const char* kMutators[] = {"append", "extend",  "insert", "pop",        "remove", "clear",
                                  "sort",   "reverse", "update", "setdefault", "popitem"};
// Other str methods Python has: they exist (`is defined` is true) but calling one is an error here.
static const char* kOtherStringMethods[] = {
    "encode",     "format",    "format_map", "center",     "ljust",        "rjust",
    "zfill",      "partition", "rpartition", "splitlines", "swapcase",     "casefold",
    "expandtabs", "isalnum",   "isnumeric",  "isdecimal",  "isidentifier", "isprintable",
    "istitle",    "isascii",   "translate",  "maketrans"};

Value lookup_method(const Value& obj, const std::string& name) {
  auto bind = [&](auto impl) {
    return Value::function(
        [obj, name, impl](Evaluator&, ValueList& a, KwArgs& kw) { return impl(obj, name, a, kw); });
  };
  auto in = [&](const auto& list) {
    return std::find(std::begin(list), std::end(list), name) != std::end(list);
  };
  if ((obj.is_sequence() || obj.is_dict()) && in(kMutators))
    return bind([](const Value& self, const std::string& n, ValueList&, KwArgs&) -> Value {
      fail(ErrorKind::kInvalidArgument,
           "access to attribute '" + n + "' of '" + self.type_name() + "' object is unsafe");
    });
  if (obj.is_string() && in(kStringMethods)) return bind(string_method);
  if (obj.is_string() && in(kOtherStringMethods))
    return bind([](const Value&, const std::string& n, ValueList&, KwArgs&) -> Value {
      fail(ErrorKind::kUnsupported,
           "str." + n + "() is not supported by this chat-template interpreter");
    });
  if (obj.is_dict() && (name == "get" || name == "items" || name == "keys" || name == "values"))
    return bind([](const Value& self, const std::string& n, ValueList& a, KwArgs& kw) -> Value {
      static const Value kNone = Value::none();
      if (n == "get") {
        const Value* v = self.dict->find(arg(a, kw, 0, "key", kNone));
        return v ? *v : arg(a, kw, 1, "default", kNone);
      }
      ValueList out;
      for (const auto& [k, v] : self.dict->entries)
        out.push_back(n == "items" ? Value::tuple({k, v}) : n == "keys" ? k : v);
      return Value::list(std::move(out));
    });
  if (obj.is_sequence() && (name == "index" || name == "count"))
    return bind([](const Value& self, const std::string& n, ValueList& a, KwArgs& kw) -> Value {
      static const Value kNone = Value::none();
      const Value& x = arg(a, kw, 0, "value", kNone);
      int64_t hits = 0;
      for (size_t i = 0; i < self.items->size(); ++i) {
        if (!equals((*self.items)[i], x)) continue;
        if (n == "index") return Value::from_int(int64_t(i));
        ++hits;
      }
      if (n == "index") fail(ErrorKind::kInvalidArgument, to_repr(x) + " is not in list");
      return Value::from_int(hits);
    });
  return Value::undefined();
}

}  // namespace bitexact::tok::jinja
