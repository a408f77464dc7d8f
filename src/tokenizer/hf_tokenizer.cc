// The tokenizer.json pipeline, in HF's order: split out non-normalized added tokens, normalize
// each remaining piece, split out normalized added tokens, pre-tokenize, BPE each word, then add
// the post-processor's special tokens when asked to.
#include "tokenizer/hf_tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/base_tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {

void check_utf8_input(std::string_view text);  // defined in load.cc

namespace {

Json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorKind::kIo, path + ": cannot open file");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const Json::exception& e) {
    fail(ErrorKind::kFormat, path + ": not valid JSON: " + e.what());
  }
}

// The special ids the post-processor puts before and after a single sequence.
struct PostProcessor {
  std::vector<int32_t> prefix, suffix;

  void parse(const Json& j, const std::string& where) {
    if (j.is_null()) return;
    const std::string type = json_string(j, "type", where);
    if (type == "ByteLevel") return;  // only changes offsets
    if (type == "Sequence") {
      for (const Json& p : json_at(j, "processors", where)) parse(p, where);
      return;
    }
    if (type == "TemplateProcessing") {
      const Json& specials = json_at(j, "special_tokens", where);
      bool seen_a = false;
      for (const Json& piece : json_at(j, "single", where)) {
        if (piece.contains("Sequence")) {
          seen_a = true;
        } else if (piece.contains("SpecialToken")) {
          std::string name = json_string(piece.at("SpecialToken"), "id", where);
          if (!specials.contains(name))
            fail(ErrorKind::kFormat, where + ": special token `" + name + "` of the template is "
                                             "missing from `special_tokens`");
          for (const Json& id : json_at(specials.at(name), "ids", where))
            (seen_a ? suffix : prefix).push_back(id.get<int32_t>());
        } else {
          fail(ErrorKind::kFormat, where + ": template piece must be Sequence or SpecialToken");
        }
      }
      return;
    }
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      prefix.push_back(json_at(j, "cls", where).at(1).get<int32_t>());
      suffix.push_back(json_at(j, "sep", where).at(1).get<int32_t>());
      return;
    }
    fail(ErrorKind::kUnsupported, "tokenizer.json: post_processor `" + type + "` is not supported "
                                  "(supported: TemplateProcessing, ByteLevel, BertProcessing, "
                                  "RobertaProcessing, Sequence)");
  }
};

class HfTokenizer : public BaseTokenizer {
 public:
  HfTokenizer(const std::string& json_path, const std::string& config_path) {
    const Json j = read_json(json_path);
    if (!j.is_object()) fail(ErrorKind::kFormat, json_path + ": top level must be an object");
    const Json& model = json_at(j, "model", json_path);
    std::string mtype = model.value("type", std::string("BPE"));
    if (mtype != "BPE")
      fail(ErrorKind::kUnsupported, json_path + ": model type `" + mtype + "` is not supported "
                                    "(only BPE)");
    try {
      bpe_ = std::make_unique<Bpe>(model);
      normalizer_ = make_normalizer(j.value("normalizer", Json()));
      pre_tokenizer_ = make_pre_tokenizer(j.value("pre_tokenizer", Json()));
      post_.parse(j.value("post_processor", Json()), "tokenizer.json post_processor");
      decoder_ = DecoderChain(j.value("decoder", Json()));
    } catch (const Json::exception& e) {
      fail(ErrorKind::kFormat, json_path + ": malformed component: " + e.what());
    }
    load_added_tokens(j, json_path);
    for (const auto& [tok, id] : bpe_->vocab())
      if (!added_ids_.count(id)) set_token(id, tok, false);
    finish_tables();
    if (!config_path.empty()) load_config(config_path);
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    check_utf8_input(text);
    std::vector<int32_t> out;
    if (add_special_tokens) out = post_.prefix;
    std::vector<TextSplit> outer, inner;
    std::vector<std::string> pieces;
    raw_matcher_.split(text, outer);
    for (const TextSplit& s : outer) {
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      std::string seg(text.substr(s.begin, s.end - s.begin));
      if (normalizer_) normalizer_->normalize(seg);
      if (seg.empty()) continue;
      inner.clear();
      if (norm_matcher_.empty()) inner.push_back({-1, 0, seg.size()});
      else norm_matcher_.split(seg, inner);
      for (const TextSplit& t : inner) {
        if (t.id >= 0) {
          out.push_back(t.id);
          continue;
        }
        pieces.clear();
        pieces.emplace_back(seg, t.begin, t.end - t.begin);
        if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces, s.begin == 0 && t.begin == 0);
        for (const auto& p : pieces) bpe_->tokenize(p, out);
      }
    }
    if (add_special_tokens) out.insert(out.end(), post_.suffix.begin(), post_.suffix.end());
    return out;
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    auto it = added_by_content_.find(token);
    if (it != added_by_content_.end()) return it->second;
    return bpe_->token_to_id(token);
  }

 private:
  void load_added_tokens(const Json& j, const std::string& where) {
    std::vector<AddedToken> raw, norm;
    std::vector<std::string> raw_pat, norm_pat;
    if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
      for (const Json& a : j.at("added_tokens")) {
        AddedToken t;
        try {
          t.id = a.at("id").get<int32_t>();
          t.content = a.at("content").get<std::string>();
        } catch (const Json::exception&) {
          fail(ErrorKind::kFormat, where + ": an entry of `added_tokens` lacks `id` or `content`");
        }
        t.single_word = a.value("single_word", false);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.special = a.value("special", false);
        t.normalized = a.value("normalized", !t.special);
        if (t.content.empty() || t.id < 0) continue;
        set_token(t.id, t.content, t.special);
        added_ids_.insert(t.id);
        added_by_content_[t.content] = t.id;
        if (t.normalized) {
          std::string p = t.content;
          if (normalizer_) normalizer_->normalize(p);
          norm_pat.push_back(p);
          norm.push_back(t);
        } else {
          raw_pat.push_back(t.content);
          raw.push_back(t);
        }
      }
    }
    raw_matcher_ = AddedTokenMatcher(std::move(raw), std::move(raw_pat));
    norm_matcher_ = AddedTokenMatcher(std::move(norm), std::move(norm_pat));
    // HF counts distinct token strings of the model vocab and the added tokens.
    vocab_size_ = static_cast<int64_t>(bpe_->vocab().size());
    for (const auto& [content, id] : added_by_content_)
      if (!bpe_->token_to_id(content)) ++vocab_size_;
  }

  void load_config(const std::string& path) {
    const Json c = read_json(path);
    auto token_string = [](const Json& v) -> std::string {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v.at("content").is_string())
        return v.at("content").get<std::string>();
      return {};
    };
    if (c.contains("chat_template")) {
      const Json& t = c.at("chat_template");
      if (t.is_string()) {
        config_.chat_template = t.get<std::string>();
      } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const Json& e : t)
          if (e.value("name", std::string()) == "default")
            config_.chat_template = e.value("template", std::string());
      }
    }
    if (c.contains("bos_token")) config_.bos_token = token_string(c.at("bos_token"));
    if (c.contains("eos_token")) config_.eos_token = token_string(c.at("eos_token"));
    if (!config_.bos_token.empty()) bos_ = token_to_id(config_.bos_token);
    if (!config_.eos_token.empty()) eos_ = token_to_id(config_.eos_token);
    if (bos_) {
      for (int32_t id : post_.prefix) config_.add_bos_token |= id == *bos_;
    }
    if (eos_) {
      for (int32_t id : post_.suffix) config_.add_eos_token |= id == *eos_;
    }
  }

  std::unique_ptr<Bpe> bpe_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  PostProcessor post_;
  AddedTokenMatcher raw_matcher_, norm_matcher_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> added_by_content_;
  std::unordered_set<int32_t> added_ids_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_path,
                                             const std::string& config_path) {
  return std::make_unique<HfTokenizer>(json_path, config_path);
}

}  // namespace bitexact::tok
