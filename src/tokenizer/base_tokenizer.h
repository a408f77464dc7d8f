// What the tokenizer.json and GGUF tokenizers share: the id -> token table with special flags,
// decoding through a DecoderChain, and the run-decoding hooks IncrementalDetokenizer uses.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/components.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::tok {

class BaseTokenizer : public Tokenizer {
 public:
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::string id_to_token(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return bos_; }
  std::optional<int32_t> eos_id() const override { return eos_; }
  const TokenizerConfig& config() const override { return config_; }

  // --- incremental decoding ---
  bool streamable() const { return decoder_.streamable(); }
  // True when the decoded text of ids[:k] + ids[k:] equals the decode of ids if ids[k] == id.
  bool can_cut_before(int32_t id, bool skip_special_tokens) const;
  // True when appending `id` to an open run cannot change its partial decode: a <0xXX> byte of a
  // ByteFallback group, which decodes all or nothing when the group ends.
  bool extends_byte_group(int32_t id) const;
  // Decodes `ids` as a continuation of earlier runs described by `ctx` (ctx.partial: leave out
  // text that later ids could change). `had_token` tells whether any id reached the decoder.
  std::string decode_run(std::span<const int32_t> ids, const DecodeContext& ctx,
                         bool skip_special_tokens, bool* had_token) const;

 protected:
  // Subclasses fill these, then call finish_tables().
  std::vector<std::string> pieces_;  // id -> token string
  std::vector<uint8_t> flags_;       // id -> kExists | kSpecial | kSelfContained
  DecoderChain decoder_;
  TokenizerConfig config_;
  std::optional<int32_t> bos_, eos_;
  int64_t vocab_size_ = 0;
  static constexpr uint8_t kExists = 1, kSpecial = 2, kSelfContained = 4;
  void set_token(int32_t id, const std::string& piece, bool special);
  void finish_tables();

 private:
  bool reaches_decoder(int32_t id, bool skip_special_tokens) const;
};

}  // namespace bitexact::tok
