// Public tokenizer API: one abstract Tokenizer (Hugging Face tokenizer.json or a GGUF SentencePiece
// vocabulary behind it), the loader that picks the right one, the chat-template side info, and a
// streaming detokenizer whose pieces always concatenate to exactly Tokenizer::decode.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitexact::tok {

// Where a decoded run of tokens sits in the whole sequence (IncrementalDetokenizer's bookkeeping).
struct DecodeContext {
  bool first_token = true;  // no token was decoded before this run
  bool text_start = true;   // no text was produced before this run
  bool partial = false;     // more tokens may follow: leave out text that later tokens could change
};

// Side info for chat templates, read from tokenizer_config.json or GGUF metadata.
struct TokenizerConfig {
  std::string chat_template;  // Jinja source; empty when the model has none
  std::string bos_token;      // token strings as the template sees them ("" when absent)
  std::string eos_token;
  bool add_bos_token = false;  // what the post-processor adds with add_special_tokens=true
  bool add_eos_token = false;
};

// Immutable after load; encode/decode are const and safe to call from many threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Throws Error(kInvalidArgument) when `text` is not valid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids that name no token are skipped, as Hugging Face `tokenizers` does. Bytes that do not form
  // valid UTF-8 come out as U+FFFD.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;
  virtual int64_t vocab_size() const = 0;  // including added tokens
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;  // raw vocab string; "" for an unknown id
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual const TokenizerConfig& config() const = 0;

};

// `path`: a folder holding tokenizer.json (+ tokenizer_config.json), a tokenizer.json file, or a
// .gguf file. Throws Error(kIo / kFormat / kUnsupported) naming the file and the offending part.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Streaming decode: push ids one at a time, get the newly completed text. Never emits a partial
// UTF-8 sequence, and the concatenation of everything push() and flush() return equals
// tokenizer.decode(all_ids, skip_special_tokens) exactly.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string flush();  // the text still held back; the detokenizer is then empty again

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // every id pushed since construction or the last flush
  size_t seg_begin_ = 0;      // ids_[seg_begin_:] is the open segment; text before it is final
  size_t seg_emitted_ = 0;    // bytes of the open segment's decoded text already returned
  DecodeContext ctx_;         // what precedes the open segment
};

}  // namespace bitexact::tok
