// Text helpers with Python's semantics: UTF-8 <-> code points (str indexes code points),
// str.isspace()/strip(), and json.dumps exactly as transformers' tojson filter calls it.
#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "tokenizer/jinja/value.h"

namespace bitexact::tok::jinja {

// Invalid bytes decode to U+DC80+byte (Python's surrogateescape) and encode back to the same byte,
// so slicing never corrupts text that was not valid UTF-8.
std::vector<char32_t> utf8_decode(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cc = s[i + k];
      ok = (cc >> 6) == 2;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp < 0xe000)))
      ok = false;
    if (!ok) {
      out.push_back(0xdc00 + c);
      i += 1;
    } else {
      out.push_back(cp);
      i += len;
    }
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) {
    out += char(cp - 0xdc00);
  } else if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

std::string utf8_encode(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) utf8_append(out, cp);
  return out;
}

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

std::string py_strip(const std::string& s, bool left, bool right, const Value& chars) {
  std::vector<char32_t> cps = utf8_decode(s);
  std::vector<char32_t> set;
  bool whitespace = chars.is_none() || chars.is_undefined();
  if (!whitespace) {
    if (!chars.is_string()) fail(ErrorKind::kInvalidArgument, "strip arg must be None or str");
    set = utf8_decode(chars.text);
  }
  auto strip_it = [&](char32_t c) {
    return whitespace ? is_py_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return utf8_encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e));
}

static void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  for (char32_t cp : utf8_decode(s)) {
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
      if (cp >= 0x10000) {
        char32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", unsigned(0xd800 | (v >> 10)),
                      unsigned(0xdc00 | (v & 0x3ff)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
      }
      out += buf;
    } else {
      utf8_append(out, cp);
    }
  }
  out += '"';
}

static std::string json_key(const Value& k) {
  switch (k.kind) {
    case Kind::kString:
      return k.text;
    case Kind::kBool:
      return k.boolean ? "true" : "false";
    case Kind::kNone:
      return "null";
    case Kind::kInt:
    case Kind::kFloat:
      return to_str(k);
    default:
      fail(ErrorKind::kInvalidArgument,
           "tojson: keys must be str, int, float, bool or None, not " + k.type_name());
  }
}

static void dump(std::string& out, const Value& v, const JsonOptions& o, int depth) {
  if (depth > 512) fail(ErrorKind::kInvalidArgument, "tojson: value nested too deeply");
  std::string item_sep = o.has_separators ? o.item_sep : o.has_indent ? "," : ", ";
  std::string key_sep = o.has_separators ? o.key_sep : ": ";
  auto newline = [&](int level) {
    if (!o.has_indent) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += o.indent;
  };
  switch (v.kind) {
    case Kind::kNone:
      out += "null";
      return;
    case Kind::kBool:
      out += v.boolean ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(v.integer);
      return;
    case Kind::kFloat:
      if (v.real != v.real)
        out += "NaN";
      else if (v.real > 1e308 || v.real < -1e308)
        out += v.real > 0 ? "Infinity" : "-Infinity";
      else
        out += format_float(v.real);
      return;
    case Kind::kString:
      json_string(out, v.text, o.ensure_ascii);
      return;
    case Kind::kList:
    case Kind::kTuple: {
      if (v.items->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.items->size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        dump(out, (*v.items)[i], o, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Kind::kDict: {
      if (v.dict->entries.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, val] : v.dict->entries) entries.emplace_back(json_key(k), &val);
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_string(out, entries[i].first, o.ensure_ascii);
        out += key_sep;
        dump(out, *entries[i].second, o, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      fail(ErrorKind::kInvalidArgument,
           "tojson: Object of type " + v.type_name() + " is not JSON serializable");
  }
}

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  dump(out, v, options, 0);
  return out;
}

}  // namespace bitexact::tok::jinja
