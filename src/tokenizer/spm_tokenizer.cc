// SentencePiece BPE over a GGUF vocabulary. Control/user-defined/unknown tokens are matched in the
// text first (llama.cpp's parse_special); each remaining fragment gets the dummy-prefix space,
// spaces become U+2581, and pairs merge by highest piece score, leftmost first (sentencepiece's
// bpe_model.cc). Characters without a piece fall back to <0xXX> byte tokens.
#include "tokenizer/spm_tokenizer.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <queue>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/base_tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {

void check_utf8_input(std::string_view text);  // defined in load.cc

namespace {

enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

class SpmTokenizer : public BaseTokenizer {
 public:
  explicit SpmTokenizer(const std::string& path) {
    io::GgufFile f = io::GgufFile::open(path);
    std::string model = f.get_string("tokenizer.ggml.model");
    if (model != "llama")
      fail(ErrorKind::kUnsupported, path + ": tokenizer.ggml.model `" + model +
                                        "` is not supported (only \"llama\", SentencePiece BPE)");
    std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
    std::vector<float> scores = f.get_float_array("tokenizer.ggml.scores");
    std::vector<int64_t> types;
    if (f.find("tokenizer.ggml.token_type")) types = f.get_int_array("tokenizer.ggml.token_type");
    if (scores.size() != tokens.size() || (!types.empty() && types.size() != tokens.size()))
      fail(ErrorKind::kFormat, path + ": tokenizer.ggml.scores/token_type do not have one entry "
                                      "per token (" + std::to_string(tokens.size()) + ")");
    types.resize(tokens.size(), kNormal);
    scores_ = scores;
    types_.assign(types.begin(), types.end());
    std::vector<AddedToken> specials;
    std::vector<std::string> patterns;
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    for (size_t id = 0; id < tokens.size(); ++id) {
      int t = types_[id];
      bool special = t == kControl || t == kUnknown;
      set_token(static_cast<int32_t>(id), tokens[id], special);
      if (t == kNormal || t == kUserDefined || t == kUnused) pieces_by_text_.emplace(tokens[id], id);
      if (t == kByte) {
        int b = byte_value(tokens[id]);
        if (b >= 0) byte_ids_[b] = static_cast<int32_t>(id);
      }
      all_by_text_.emplace(tokens[id], static_cast<int32_t>(id));
      if ((t == kControl || t == kUserDefined || t == kUnknown) && !tokens[id].empty()) {
        AddedToken a;
        a.content = tokens[id];
        a.id = static_cast<int32_t>(id);
        a.special = special;
        specials.push_back(a);
        patterns.push_back(tokens[id]);
      }
    }
    matcher_ = AddedTokenMatcher(std::move(specials), std::move(patterns));
    vocab_size_ = static_cast<int64_t>(tokens.size());
    auto opt_id = [&](const char* key) -> std::optional<int32_t> {
      int64_t v = f.get_int_or(key, -1);
      if (v < 0 || v >= static_cast<int64_t>(tokens.size())) return std::nullopt;
      return static_cast<int32_t>(v);
    };
    bos_ = opt_id("tokenizer.ggml.bos_token_id");
    eos_ = opt_id("tokenizer.ggml.eos_token_id");
    unk_ = opt_id("tokenizer.ggml.unknown_token_id");
    add_space_prefix_ = f.get_int_or("tokenizer.ggml.add_space_prefix", 1) != 0;
    config_.add_bos_token = f.get_int_or("tokenizer.ggml.add_bos_token", 1) != 0 && bos_;
    config_.add_eos_token = f.get_int_or("tokenizer.ggml.add_eos_token", 0) != 0 && eos_;
    if (bos_) config_.bos_token = tokens[*bos_];
    if (eos_) config_.eos_token = tokens[*eos_];
    if (f.find("tokenizer.chat_template")) config_.chat_template = f.get_string("tokenizer.chat_template");
    // Decoding is what HF's LlamaTokenizerFast does for the same vocabulary.
    Json dec = {{"type", "Sequence"},
                {"decoders",
                 {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                  {{"type", "ByteFallback"}},
                  {{"type", "Fuse"}}}}};
    if (add_space_prefix_)
      dec["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    decoder_ = DecoderChain(dec);
    finish_tables();
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    check_utf8_input(text);
    std::vector<int32_t> out;
    if (add_special_tokens && config_.add_bos_token) out.push_back(*bos_);
    std::vector<TextSplit> splits;
    matcher_.split(text, splits);
    for (const TextSplit& s : splits) {
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      // Every raw fragment follows the start or a special token, so it always gets the prefix.
      std::string frag = add_space_prefix_ ? " " : "";
      frag.append(text.substr(s.begin, s.end - s.begin));
      std::string escaped;
      for (char c : frag) {
        if (c == ' ') escaped += kSpace;
        else escaped.push_back(c);
      }
      encode_fragment(escaped, out);
    }
    if (add_special_tokens && config_.add_eos_token) out.push_back(*eos_);
    return out;
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    auto it = all_by_text_.find(token);
    if (it == all_by_text_.end()) return std::nullopt;
    return it->second;
  }

 private:
  static int byte_value(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    return static_cast<int>(std::strtol(t.substr(3, 2).c_str(), nullptr, 16));
  }

  struct Symbol {
    size_t begin, len;  // bytes of the fragment
    int32_t prev, next;
  };
  struct Pair {
    float score;
    int32_t left, right;
    size_t len;
  };
  struct PairLess {  // priority_queue top: highest score, then leftmost
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  void encode_fragment(const std::string& s, std::vector<int32_t>& out) const {
    std::vector<Symbol> sym;
    for (size_t i = 0; i < s.size();) {
      size_t len = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
      int32_t k = static_cast<int32_t>(sym.size());
      sym.push_back({i, len, k - 1, -1});
      if (k > 0) sym[k - 1].next = k;
      i += len;
    }
    std::priority_queue<Pair, std::vector<Pair>, PairLess> agenda;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      size_t len = sym[l].len + sym[r].len;
      auto it = pieces_by_text_.find(std::string_view(s).substr(sym[l].begin, len));
      if (it == pieces_by_text_.end()) return;
      agenda.push({scores_[it->second], l, r, len});
    };
    for (size_t k = 1; k < sym.size(); ++k) try_add(static_cast<int32_t>(k - 1), static_cast<int32_t>(k));
    while (!agenda.empty()) {
      Pair p = agenda.top();
      agenda.pop();
      Symbol& l = sym[p.left];
      Symbol& r = sym[p.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != p.len) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = p.left;
      try_add(l.prev, p.left);
      try_add(p.left, l.next);
    }
    for (int32_t k = sym.empty() ? -1 : 0; k >= 0; k = sym[k].next) {
      std::string_view piece = std::string_view(s).substr(sym[k].begin, sym[k].len);
      auto it = pieces_by_text_.find(piece);
      if (it != pieces_by_text_.end()) {
        out.push_back(static_cast<int32_t>(it->second));
        continue;
      }
      bool all = true;
      for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : piece) out.push_back(byte_ids_[b]);
      } else if (unk_) {
        out.push_back(*unk_);
      }
    }
  }

  std::vector<float> scores_;
  std::vector<int> types_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> pieces_by_text_;
  Vocab all_by_text_;
  int32_t byte_ids_[256];  // id of the <0xXX> token of each byte, -1 when absent
  std::optional<int32_t> unk_;
  bool add_space_prefix_ = true;
  AddedTokenMatcher matcher_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& gguf_path) {
  return std::make_unique<SpmTokenizer>(gguf_path);
}

}  // namespace bitexact::tok
