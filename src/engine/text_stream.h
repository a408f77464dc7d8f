// The text side of one sample: incremental detokenization, stop-string matching, and the
// streaming hold-back of text that could still turn into a stop string. Text never feeds back
// into sampling, so it cannot affect token ids or logprobs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace bitexact::engine {

class TextStream {
 public:
  // `tokenizer` may be null (no text; `stop` must then be empty).
  TextStream(const tok::Tokenizer* tokenizer, bool skip_special_tokens, std::vector<std::string> stop);

  // Appends a token's text. Returns the stop string if the text now contains one (the text is
  // cut just before it, and nothing more may be pushed). `check_stop`: false before min_tokens.
  std::optional<std::string> push(int32_t token, bool check_stop);
  // The sequence ends without a stop string: flush the detokenizer's held-back bytes.
  std::optional<std::string> finish(bool check_stop);
  // Text not yet returned. Unless `final`, holds back a suffix that is a prefix of a stop string.
  std::string take(bool final);

 private:
  std::optional<std::string> scan(size_t from);

  std::unique_ptr<tok::IncrementalDetokenizer> detok_;
  std::vector<std::string> stop_;
  size_t max_stop_ = 0;
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace bitexact::engine
