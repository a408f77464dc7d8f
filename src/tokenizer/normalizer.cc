// Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD (utf8proc), Lowercase, Strip, StripAccents,
// Replace (string or regex), Prepend and Sequence. Offsets are not tracked: the engine needs ids.
#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {

const Json& json_at(const Json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    fail(ErrorKind::kFormat, where + ": field `" + key + "` is missing");
  return j.at(key);
}

std::string json_string(const Json& j, const char* key, const std::string& where) {
  const Json& v = json_at(j, key, where);
  if (!v.is_string()) fail(ErrorKind::kFormat, where + ": field `" + key + "` must be a string");
  return v.get<std::string>();
}

namespace {

bool all_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// Unicode White_Space, which Rust's char::is_whitespace tests.
bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(int options) : options_(options) {}
  void normalize(std::string& s) const override {
    if (all_ascii(s)) return;  // every normal form leaves ASCII unchanged
    utf8proc_uint8_t* out = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                          static_cast<utf8proc_option_t>(options_));
    if (n < 0) fail(ErrorKind::kInvalidArgument, "normalizer: text is not valid UTF-8");
    s.assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    free(out);
  }

 private:
  int options_;
};

class Lowercase : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      uint32_t c = next_code_point(s, i);
      if (c == 0x130) {  // the one full (multi-char) lowercase mapping outside special casing
        out += "i\xCC\x87";
        continue;
      }
      append_utf8(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
    s.swap(out);
  }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t j = b;
        if (!is_white_space(next_code_point(s, j))) break;
        b = j;
      }
    }
    if (right_) {
      while (e > b) {
        size_t j = e - 1;
        while (j > b && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
        size_t k = j;
        if (!is_white_space(next_code_point(s, k))) break;
        e = j;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class StripAccents : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      uint32_t c = next_code_point(s, i);
      if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN)
        append_utf8(out, c);
    }
    s.swap(out);
  }
};

class Replace : public Normalizer {
 public:
  Replace(const Json& j, const std::string& where) {
    const Json& pat = json_at(j, "pattern", where);
    content_ = json_string(j, "content", where);
    if (pat.contains("String")) {
      literal_ = pat.at("String").get<std::string>();
      if (literal_.empty()) fail(ErrorKind::kFormat, where + ": empty pattern");
    } else if (pat.contains("Regex")) {
      regex_ = std::make_unique<Regex>(pat.at("Regex").get<std::string>(), where);
    } else {
      fail(ErrorKind::kFormat, where + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  void normalize(std::string& s) const override {
    std::string out;
    size_t last = 0;
    if (regex_) {
      std::vector<std::pair<size_t, size_t>> m;
      regex_->find_all(s, m);
      if (m.empty()) return;
      for (auto [b, e] : m) {
        out.append(s, last, b - last);
        out += content_;
        last = e;
      }
    } else {
      size_t pos = s.find(literal_);
      if (pos == std::string::npos) return;
      for (; pos != std::string::npos; pos = s.find(literal_, last)) {
        out.append(s, last, pos - last);
        out += content_;
        last = pos + literal_.size();
      }
    }
    out.append(s, last, std::string::npos);
    s.swap(out);
  }

 private:
  std::string literal_, content_;
  std::unique_ptr<Regex> regex_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);  // HF prepends only to a non-empty string
  }

 private:
  std::string prepend_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& s) const override {
    for (const auto& n : steps_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const Json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = json_string(j, "type", "tokenizer.json normalizer");
  const std::string where = "tokenizer.json normalizer `" + type + "`";
  if (type == "NFC") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD")
    return std::make_unique<UnicodeForm>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Strip")
    return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "Replace") return std::make_unique<Replace>(j, where);
  if (type == "Prepend") return std::make_unique<Prepend>(json_string(j, "prepend", where));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const Json& s : json_at(j, "normalizers", where)) {
      auto n = make_normalizer(s);
      if (n) steps.push_back(std::move(n));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(ErrorKind::kUnsupported,
       "tokenizer.json: normalizer `" + type + "` is not supported (supported: NFC, NFD, NFKC, "
       "NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Sequence)");
}

}  // namespace bitexact::tok
