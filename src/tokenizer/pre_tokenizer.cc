// Pre-tokenizers of tokenizer.json: Split (regex or literal, all five delimiter behaviours,
// invert), ByteLevel (GPT-2 byte map, optional GPT-2 regex and prefix space), Metaspace, Digits,
// Whitespace, WhitespaceSplit and Sequence. Empty pieces are dropped, as HF does.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {
namespace {

using Spans = std::vector<std::pair<size_t, size_t>>;
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Applies a delimiter behaviour to `matches` (sorted, non-overlapping) within `s`, appending the
// resulting non-empty pieces to `out`. Mirrors NormalizedString::split in HF tokenizers.
void split_pieces(const std::string& s, const Spans& matches, bool invert, Behavior behavior,
                  std::vector<std::string>& out) {
  // (span, is_match) covering all of s.
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> all;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev != b) all.push_back({{prev, b}, invert});
    all.push_back({{b, e}, !invert});
    prev = e;
  }
  if (prev != s.size()) all.push_back({{prev, s.size()}, invert});

  std::vector<std::pair<size_t, size_t>> res;
  switch (behavior) {
    case Behavior::kIsolated:
      for (auto& [sp, m] : all) res.push_back(sp);
      break;
    case Behavior::kRemoved:
      for (auto& [sp, m] : all)
        if (!m) res.push_back(sp);
      break;
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (auto& [sp, m] : all) {
        if (m && !prev_match && !res.empty()) res.back().second = sp.second;
        else res.push_back(sp);
        prev_match = m;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = all.size(); k-- > 0;) {
        auto [sp, m] = all[k];
        if (m && !prev_match && !res.empty()) res.back().first = sp.first;
        else res.push_back(sp);
        prev_match = m;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (auto& [sp, m] : all) {
        if (m == prev_match && !res.empty()) res.back().second = sp.second;
        else res.push_back(sp);
        prev_match = m;
      }
      break;
    }
  }
  for (auto [b, e] : res)
    if (e > b) out.emplace_back(s, b, e - b);
}

Behavior parse_behavior(const std::string& b, const std::string& where) {
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  fail(ErrorKind::kUnsupported, where + ": split behavior `" + b + "` is not supported");
}

void literal_matches(const std::string& s, const std::string& lit, Spans& out) {
  out.clear();
  if (lit.empty()) return;
  for (size_t p = s.find(lit); p != std::string::npos; p = s.find(lit, p + lit.size()))
    out.emplace_back(p, p + lit.size());
}

class Split : public PreTokenizer {
 public:
  Split(const Json& j, const std::string& where) {
    const Json& pat = json_at(j, "pattern", where);
    if (pat.contains("Regex")) regex_ = std::make_unique<Regex>(pat.at("Regex"), where);
    else if (pat.contains("String")) literal_ = pat.at("String").get<std::string>();
    else fail(ErrorKind::kFormat, where + ": pattern must be {\"Regex\": ...} or {\"String\": ...}");
    behavior_ = parse_behavior(json_string(j, "behavior", where), where);
    invert_ = j.value("invert", false);
  }
  void pre_tokenize(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    Spans m;
    for (const auto& p : pieces) {
      if (regex_) regex_->find_all(p, m);
      else literal_matches(p, literal_, m);
      split_pieces(p, m, invert_, behavior_, out);
    }
    pieces.swap(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
  Behavior behavior_;
  bool invert_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(const Json& j, const std::string& where) {
    add_prefix_space_ = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) regex_ = std::make_unique<Regex>(kGpt2Pattern, where);
  }
  void pre_tokenize(std::vector<std::string>& pieces, bool) const override {
    const ByteLevelMap& map = byte_level_map();
    std::vector<std::string> split;
    Spans m;
    for (auto& p : pieces) {
      if (add_prefix_space_ && (p.empty() || p[0] != ' ')) p.insert(0, " ");
      if (regex_) {
        regex_->find_all(p, m);
        split_pieces(p, m, false, Behavior::kIsolated, split);
      } else {
        split.push_back(std::move(p));
      }
    }
    for (auto& p : split) {
      std::string mapped;
      mapped.reserve(p.size() * 2);
      for (unsigned char c : p) mapped += map.byte_to_str[c];
      p.swap(mapped);
    }
    pieces.swap(split);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  Metaspace(const Json& j, const std::string& where) {
    replacement_ = json_string(j, "replacement", where);
    if (j.contains("prepend_scheme")) {
      scheme_ = json_string(j, "prepend_scheme", where);
      if (scheme_ != "always" && scheme_ != "first" && scheme_ != "never")
        fail(ErrorKind::kUnsupported, where + ": prepend_scheme `" + scheme_ + "`");
    } else {
      scheme_ = j.value("add_prefix_space", true) ? "always" : "never";
    }
    split_ = j.value("split", true);
  }
  void pre_tokenize(std::vector<std::string>& pieces, bool at_input_start) const override {
    std::vector<std::string> out;
    Spans m;
    for (size_t k = 0; k < pieces.size(); ++k) {
      std::string s;
      for (char c : pieces[k]) {
        if (c == ' ') s += replacement_;
        else s.push_back(c);
      }
      bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == "always" || (scheme_ == "first" && k == 0 && at_input_start)))
        s.insert(0, replacement_);
      if (split_) {
        literal_matches(s, replacement_, m);
        split_pieces(s, m, false, Behavior::kMergedWithNext, out);
      } else if (!s.empty()) {
        out.push_back(std::move(s));
      }
    }
    pieces.swap(out);
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

// Whitespace, WhitespaceSplit and Digits are regex splits with a fixed pattern.
class FixedSplit : public PreTokenizer {
 public:
  FixedSplit(const char* pattern, bool invert, Behavior b, const std::string& where)
      : regex_(pattern, where), invert_(invert), behavior_(b) {}
  void pre_tokenize(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    Spans m;
    for (const auto& p : pieces) {
      regex_.find_all(p, m);
      split_pieces(p, m, invert_, behavior_, out);
    }
    pieces.swap(out);
  }

 private:
  Regex regex_;
  bool invert_;
  Behavior behavior_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> s) : steps_(std::move(s)) {}
  void pre_tokenize(std::vector<std::string>& pieces, bool at_input_start) const override {
    for (const auto& s : steps_) s->pre_tokenize(pieces, at_input_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = json_string(j, "type", "tokenizer.json pre_tokenizer");
  const std::string where = "tokenizer.json pre_tokenizer `" + type + "`";
  if (type == "Split") return std::make_unique<Split>(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j, where);
  if (type == "Metaspace") return std::make_unique<Metaspace>(j, where);
  if (type == "Whitespace")
    return std::make_unique<FixedSplit>(R"(\w+|[^\w\s]+)", true, Behavior::kRemoved, where);
  if (type == "WhitespaceSplit")
    return std::make_unique<FixedSplit>(R"(\s+)", false, Behavior::kRemoved, where);
  if (type == "Digits")
    return std::make_unique<FixedSplit>(j.value("individual_digits", false) ? "[0-9]" : "[0-9]+",
                                        false, Behavior::kIsolated, where);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const Json& s : json_at(j, "pretokenizers", where)) {
      auto p = make_pre_tokenizer(s);
      if (p) steps.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  fail(ErrorKind::kUnsupported,
       "tokenizer.json: pre_tokenizer `" + type + "` is not supported (supported: Split, "
       "ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, Sequence)");
}

}  // namespace bitexact::tok
