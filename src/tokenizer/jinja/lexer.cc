// Jinja lexer: the root state finds {{ {% {# tags and applies the strip rules to the text before
// them; the tag state splits names, numbers, strings and operators until the matching end tag.
#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "tokenizer/jinja/value.h"

namespace bitexact::tok::jinja {

Source::Source(const std::string& raw) {
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      text += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      text += raw[i];
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
}

std::string Source::where(size_t offset) const {
  offset = std::min(offset, text.size());
  size_t line = 1 + std::count(text.begin(), text.begin() + offset, '\n');
  size_t nl = text.rfind('\n', offset == 0 ? std::string::npos : offset - 1);
  size_t col = offset == 0 ? 1 : (nl == std::string::npos ? offset + 1 : offset - nl);
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

namespace {

struct Lexer {
  const Source& src;
  const std::string& s;
  std::vector<Token> out;

  [[noreturn]] void error(size_t at, const std::string& msg) {
    fail(ErrorKind::kFormat, "template syntax error at " + src.where(at) + ": " + msg);
  }

  // Python's str.isspace() on the code point starting at byte i; returns its length, 0 if not
  // space.
  size_t space_at(size_t i) const {
    unsigned char c = s[i];
    if (c < 0x80) return is_py_space(c) ? 1 : 0;
    size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    if (i + len > s.size()) return 0;
    auto cps = utf8_decode(s.substr(i, len));
    return cps.size() == 1 && is_py_space(cps[0]) ? len : 0;
  }
  size_t skip_space(size_t i) const {
    while (i < s.size()) {
      size_t n = space_at(i);
      if (!n) break;
      i += n;
    }
    return i;
  }
  bool all_space(const std::string& t) const {
    for (char32_t c : utf8_decode(t))
      if (!is_py_space(c)) return false;
    return !t.empty();
  }

  void emit_text(std::string text, char sign, bool is_variable, bool line_starting) {
    if (sign == '-') {
      text = py_strip(text, false, true, Value::none());
    } else if (sign != '+' && !is_variable) {  // lstrip_blocks
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting) && all_space(text.substr(l_pos))) text.resize(l_pos);
    }
    if (!text.empty()) out.push_back({Tok::kText, std::move(text), 0});
  }

  // Position after a block end "%}" found at i, applying -%}, +%} and trim_blocks.
  size_t after_block_end(size_t i, char before) {
    if (before == '-') return skip_space(i + 2);
    if (before != '+' && i + 2 < s.size() && s[i + 2] == '\n') return i + 3;
    return i + 2;
  }

  std::string decode_string(size_t at, const std::string& body);
  size_t lex_tag(size_t pos, bool is_variable);
  void run();
};

std::string Lexer::decode_string(size_t at, const std::string& b) {
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != '\\' || i + 1 == b.size()) {
      out += b[i];
      continue;
    }
    char c = b[++i];
    auto hex = [&](int n) {
      char32_t v = 0;
      for (int k = 1; k <= n; ++k) {
        char h = i + k < b.size() ? b[i + k] : 'g';
        int d = std::isdigit(uint8_t(h))             ? h - '0'
                : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10
                                                     : -1;
        if (d < 0) error(at, "truncated \\x/\\u escape in string");
        v = v * 16 + d;
      }
      i += n;
      if (v > 0x10ffff) error(at, "illegal Unicode character in string escape");
      utf8_append(out, v);
    };
    switch (c) {
      case '\n':
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      default:
        if (c >= '0' && c <= '7') {
          char32_t v = c - '0';
          for (int k = 0; k < 2 && i + 1 < b.size() && b[i + 1] >= '0' && b[i + 1] <= '7'; ++k)
            v = v * 8 + (b[++i] - '0');
          utf8_append(out, v);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

// Lexes the inside of a tag starting at pos; returns the position after its end tag.
size_t Lexer::lex_tag(size_t pos, bool is_variable) {
  static const char* kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                               "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                               ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
  std::string brackets;
  size_t start = pos;
  while (true) {
    pos = skip_space(pos);
    if (pos >= s.size())
      error(start, is_variable ? "unexpected end of template, expected '}}'"
                               : "unexpected end of template, expected '%}'");
    if (brackets.empty()) {
      char sign = s[pos] == '-' || (!is_variable && s[pos] == '+') ? s[pos] : 0;
      const char* end = is_variable ? "}}" : "%}";
      if (s.compare(pos + (sign ? 1 : 0), 2, end) == 0) {
        size_t at = pos + (sign ? 1 : 0);
        out.push_back({is_variable ? Tok::kVarEnd : Tok::kBlockEnd, "", pos});
        if (sign == '-') return skip_space(at + 2);
        return is_variable ? at + 2 : after_block_end(at, sign);
      }
    }
    char c = s[pos];
    if (std::isdigit(uint8_t(c))) {
      size_t e = pos;
      while (e < s.size() && (std::isdigit(uint8_t(s[e])) || s[e] == '_')) ++e;
      bool is_float = false;
      if (e + 1 < s.size() && s[e] == '.' && std::isdigit(uint8_t(s[e + 1])) &&
          (pos == 0 || s[pos - 1] != '.')) {
        is_float = true;
        for (++e; e < s.size() && (std::isdigit(uint8_t(s[e])) || s[e] == '_');) ++e;
      }
      if (e < s.size() && (s[e] | 32) == 'e') {
        size_t x = e + 1;
        if (x < s.size() && (s[x] == '+' || s[x] == '-')) ++x;
        if (x < s.size() && std::isdigit(uint8_t(s[x]))) {
          is_float = true;
          for (e = x; e < s.size() && (std::isdigit(uint8_t(s[e])) || s[e] == '_');) ++e;
        }
      }
      std::string num = s.substr(pos, e - pos);
      num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
      out.push_back({is_float ? Tok::kFloat : Tok::kInt, num, pos});
      pos = e;
    } else if (std::isalpha(uint8_t(c)) || c == '_') {
      size_t e = pos;
      while (e < s.size() && (std::isalnum(uint8_t(s[e])) || s[e] == '_')) ++e;
      out.push_back({Tok::kName, s.substr(pos, e - pos), pos});
      pos = e;
    } else if (c == '\'' || c == '"') {
      size_t e = pos + 1;
      while (e < s.size() && s[e] != c) e += s[e] == '\\' ? 2 : 1;
      if (e >= s.size()) error(pos, "unterminated string literal");
      out.push_back({Tok::kString, decode_string(pos, s.substr(pos + 1, e - pos - 1)), pos});
      pos = e + 1;
    } else {
      const char* op = nullptr;
      for (const char* o : kOps)
        if (s.compare(pos, std::strlen(o), o) == 0) {
          op = o;
          break;
        }
      if (!op) error(pos, std::string("unexpected char '") + c + "'");
      std::string o = op;
      if (o == "(" || o == "[" || o == "{") {
        brackets += o == "(" ? ')' : o == "[" ? ']' : '}';
      } else if (o == ")" || o == "]" || o == "}") {
        if (brackets.empty()) error(pos, "unexpected '" + o + "'");
        if (brackets.back() != o[0])
          error(pos, "unexpected '" + o + "', expected '" + brackets.back() + "'");
        brackets.pop_back();
      }
      out.push_back({Tok::kOp, o, pos});
      pos += o.size();
    }
  }
}

void Lexer::run() {
  size_t pos = 0;
  bool line_starting = true;
  while (pos < s.size()) {
    size_t open = pos;
    while ((open = s.find('{', open)) != std::string::npos && open + 1 < s.size() &&
           !std::strchr("{%#", s[open + 1]))
      ++open;
    if (open == std::string::npos || open + 1 >= s.size()) {
      out.push_back({Tok::kText, s.substr(pos), pos});
      break;
    }
    char kind = s[open + 1];
    char sign = open + 2 < s.size() && (s[open + 2] == '-' || s[open + 2] == '+') ? s[open + 2] : 0;
    size_t inner = open + 2 + (sign ? 1 : 0);
    emit_text(s.substr(pos, open - pos), sign, kind == '{', line_starting);
    if (kind == '#') {
      size_t end = s.find("#}", inner);
      if (end == std::string::npos) error(open, "missing end of comment tag");
      char before = end > inner ? s[end - 1] : 0;
      pos = before == '-' ? skip_space(end + 2) : before == '+' ? end + 2 : after_block_end(end, 0);
    } else if (kind == '%') {
      // {% raw %}...{% endraw %}: text passed through verbatim.
      size_t p = skip_space(inner);
      if (s.compare(p, 3, "raw") == 0) {
        size_t q = skip_space(p + 3);
        char rsign = s[q] == '-' ? '-' : 0;
        if (s.compare(q + (rsign ? 1 : 0), 2, "%}") == 0) {
          size_t body = rsign ? skip_space(q + 3) : q + 2;
          size_t e = body;
          while ((e = s.find("{%", e)) != std::string::npos) {
            size_t t = skip_space(e + 2 + (s[e + 2] == '-' || s[e + 2] == '+'));
            if (s.compare(t, 6, "endraw") == 0) break;
            e += 2;
          }
          if (e == std::string::npos) error(open, "missing end of raw directive");
          char esign = s[e + 2] == '-' || s[e + 2] == '+' ? s[e + 2] : 0;
          emit_text(s.substr(body, e - body), esign, false, false);
          size_t t = skip_space(skip_space(e + 2 + (esign ? 1 : 0)) + 6);
          char csign = s[t] == '-' || s[t] == '+' ? s[t] : 0;
          if (s.compare(t + (csign ? 1 : 0), 2, "%}") != 0) error(e, "expected '%}' after endraw");
          pos = after_block_end(t + (csign ? 1 : 0), csign);
          line_starting = pos > 0 && s[pos - 1] == '\n';
          continue;
        }
      }
      out.push_back({Tok::kBlockBegin, "", open});
      pos = lex_tag(inner, false);
    } else {
      out.push_back({Tok::kVarBegin, "", open});
      pos = lex_tag(inner, true);
    }
    line_starting = pos > 0 && s[pos - 1] == '\n';
  }
  out.push_back({Tok::kEof, "", s.size()});
}

}  // namespace

std::vector<Token> lex(const Source& source) {
  Lexer lexer{source, source.text, {}};
  lexer.run();
  return std::move(lexer.out);
}

}  // namespace bitexact::tok::jinja
