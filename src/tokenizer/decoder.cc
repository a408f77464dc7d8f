// Decoders of tokenizer.json: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace and
// Sequence, each a step over the list of token strings exactly as HF's decode_chain runs them.
// The DecodeContext lets IncrementalDetokenizer decode a run of tokens that continues earlier ones.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {
namespace {

// The byte a "<0xAB>" token stands for, or -1.
int byte_token_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// The raw bytes a ByteLevel token stands for; a token with a char outside the map is taken as is.
void byte_level_bytes(const std::string& t, std::string& out) {
  const ByteLevelMap& map = byte_level_map();
  size_t start = out.size();
  for (size_t i = 0; i < t.size();) {
    uint32_t cp = next_code_point(t, i);
    int b = cp < map.cp_to_byte.size() ? map.cp_to_byte[cp] : -1;
    if (b < 0) {
      out.resize(start);
      out += t;
      return;
    }
    out.push_back(static_cast<char>(b));
  }
}

class ByteLevelDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens, const DecodeContext& ctx) const override {
    std::string bytes;
    for (const auto& t : tokens) byte_level_bytes(t, bytes);
    if (ctx.partial) {
      // Hold back an unfinished multi-byte character: the next token may complete it.
      if (ends_with_incomplete_utf8(bytes)) {
        size_t cut = bytes.size();
        while (cut > 0 && (static_cast<unsigned char>(bytes[cut - 1]) & 0xC0) == 0x80) --cut;
        bytes.resize(cut > 0 ? cut - 1 : 0);  // drop the lead byte and its continuation bytes
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ByteFallbackDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens, const DecodeContext& ctx) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8(pending)) out.push_back(pending);
      else
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      int b = byte_token_value(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    // A trailing byte group may still grow; it decodes all-or-nothing, so hold all of it back.
    if (!ctx.partial) flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens, const DecodeContext&) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(uint32_t content, size_t start, size_t stop, bool after_fuse)
      : content_(content), start_(start), stop_(stop), after_fuse_(after_fuse) {}
  void decode(std::vector<std::string>& tokens, const DecodeContext& ctx) const override {
    for (auto& t : tokens) {
      // After a fuse the one token is the whole text, so its start is the text's start only
      // when nothing was decoded before this run.
      size_t b = 0, e = t.size();
      if (!after_fuse_ || ctx.text_start) {
        for (size_t k = 0; k < start_ && b < e; ++k) {
          size_t j = b;
          if (next_code_point(t, j) != content_) break;
          b = j;
        }
      }
      for (size_t k = 0; k < stop_ && e > b; ++k) {
        size_t j = e - 1;
        while (j > b && (static_cast<unsigned char>(t[j]) & 0xC0) == 0x80) --j;
        size_t i = j;
        if (next_code_point(t, i) != content_) break;
        e = j;
      }
      t = t.substr(b, e - b);
    }
  }

 private:
  uint32_t content_;
  size_t start_, stop_;
  bool after_fuse_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const Json& j, const std::string& where) {
    const Json& pat = json_at(j, "pattern", where);
    content_ = json_string(j, "content", where);
    if (pat.contains("String")) literal_ = pat.at("String").get<std::string>();
    else if (pat.contains("Regex")) regex_ = std::make_unique<Regex>(pat.at("Regex"), where);
    else fail(ErrorKind::kFormat, where + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
    if (!regex_ && literal_.empty()) fail(ErrorKind::kFormat, where + ": empty pattern");
  }
  bool single_char() const { return !regex_ && utf8_len(literal_[0]) == literal_.size(); }
  void decode(std::vector<std::string>& tokens, const DecodeContext&) const override {
    std::vector<std::pair<size_t, size_t>> m;
    for (auto& t : tokens) {
      m.clear();
      if (regex_) regex_->find_all(t, m);
      else
        for (size_t p = t.find(literal_); p != std::string::npos;
             p = t.find(literal_, p + literal_.size()))
          m.emplace_back(p, p + literal_.size());
      if (m.empty()) continue;
      std::string out;
      size_t last = 0;
      for (auto [b, e] : m) {
        out.append(t, last, b - last);
        out += content_;
        last = e;
      }
      out.append(t, last, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string literal_, content_;
  std::unique_ptr<Regex> regex_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(const Json& j, const std::string& where) {
    std::string r = json_string(j, "replacement", where);
    size_t i = 0;
    replacement_ = next_code_point(r, i);
    if (j.contains("prepend_scheme")) prepend_ = json_string(j, "prepend_scheme", where) != "never";
    else prepend_ = j.value("add_prefix_space", true);
  }
  void decode(std::vector<std::string>& tokens, const DecodeContext& ctx) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      // HF drops every replacement char of the very first token (not only a leading one).
      bool first = k == 0 && ctx.first_token && prepend_;
      std::string out;
      const std::string& t = tokens[k];
      for (size_t i = 0; i < t.size();) {
        size_t b = i;
        uint32_t c = next_code_point(t, i);
        if (c == replacement_) {
          if (!first) out.push_back(' ');
        } else {
          out.append(t, b, i - b);
        }
      }
      tokens[k].swap(out);
    }
  }

 private:
  uint32_t replacement_;
  bool prepend_;
};

}  // namespace

DecoderChain::~DecoderChain() = default;
DecoderChain::DecoderChain(DecoderChain&&) noexcept = default;
DecoderChain& DecoderChain::operator=(DecoderChain&&) noexcept = default;

DecoderChain::DecoderChain(const Json& j) {
  if (j.is_null()) return;
  none_ = false;
  std::vector<const Json*> flat;
  const std::string type0 = json_string(j, "type", "tokenizer.json decoder");
  if (type0 == "Sequence") {
    for (const Json& s : json_at(j, "decoders", "tokenizer.json decoder `Sequence`"))
      flat.push_back(&s);
  } else {
    flat.push_back(&j);
  }
  bool fused = false;
  for (const Json* d : flat) {
    const std::string type = json_string(*d, "type", "tokenizer.json decoder");
    const std::string where = "tokenizer.json decoder `" + type + "`";
    if (type == "ByteLevel") {
      steps_.push_back(std::make_unique<ByteLevelDecoder>());
      byte_level_ = true;
      fused = true;
    } else if (type == "ByteFallback") {
      steps_.push_back(std::make_unique<ByteFallbackDecoder>());
      byte_fallback_ = true;
      if (fused) streamable_ = false;
    } else if (type == "Fuse") {
      steps_.push_back(std::make_unique<FuseDecoder>());
      fused = true;
    } else if (type == "Strip") {
      std::string c = json_string(*d, "content", where);
      size_t i = 0;
      uint32_t cp = c.empty() ? 0 : next_code_point(c, i);
      size_t start = d->value("start", 0), stop = d->value("stop", 0);
      // A fused text's end moves with every token, and a multi-char start strip could span a cut.
      if (fused && (stop > 0 || start > 1)) streamable_ = false;
      steps_.push_back(std::make_unique<StripDecoder>(cp, start, stop, fused));
    } else if (type == "Replace") {
      auto r = std::make_unique<ReplaceDecoder>(*d, where);
      if (fused && !r->single_char()) streamable_ = false;  // a match could span a cut
      steps_.push_back(std::move(r));
    } else if (type == "Metaspace") {
      if (fused) streamable_ = false;
      steps_.push_back(std::make_unique<MetaspaceDecoder>(*d, where));
    } else {
      fail(ErrorKind::kUnsupported,
           "tokenizer.json: decoder `" + type + "` is not supported (supported: ByteLevel, "
           "ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence)");
    }
  }
}

std::string DecoderChain::decode(std::vector<std::string> tokens, const DecodeContext& ctx) const {
  if (none_) {
    // HF joins the tokens with spaces when a tokenizer has no decoder.
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k > 0 || !ctx.first_token) out.push_back(' ');
      out += tokens[k];
    }
    return out;
  }
  for (const auto& s : steps_) s->decode(tokens, ctx);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

bool DecoderChain::holds_back(const std::string& token) const {
  return byte_fallback_ && !byte_level_ && streamable_ && byte_token_value(token) >= 0;
}

bool DecoderChain::self_contained(const std::string& token) const {
  if (byte_fallback_ && byte_token_value(token) >= 0) return false;
  if (byte_level_) {
    std::string bytes;
    byte_level_bytes(token, bytes);
    return is_valid_utf8(bytes);
  }
  return true;
}

}  // namespace bitexact::tok
