// TextStream: stop strings are searched only in the region new text can complete (the last
// max_stop - 1 old bytes plus the new ones), so a long output costs O(new text) per token.
#include "engine/text_stream.h"

#include <algorithm>

namespace bitexact::engine {

TextStream::TextStream(const tok::Tokenizer* tokenizer, bool skip_special_tokens,
                       std::vector<std::string> stop)
    : stop_(std::move(stop)) {
  if (tokenizer) detok_ = std::make_unique<tok::IncrementalDetokenizer>(*tokenizer, skip_special_tokens);
  for (const auto& s : stop_) max_stop_ = std::max(max_stop_, s.size());
}

std::optional<std::string> TextStream::scan(size_t from) {
  from = from >= max_stop_ ? from - (max_stop_ - 1) : 0;
  size_t best = std::string::npos;
  const std::string* hit = nullptr;
  for (const auto& s : stop_) {
    size_t at = text_.find(s, from);
    if (at < best) best = at, hit = &s;  // the earliest stop string in the text wins
  }
  if (!hit) return std::nullopt;
  text_.resize(best);
  emitted_ = std::min(emitted_, text_.size());
  return *hit;
}

std::optional<std::string> TextStream::push(int32_t token, bool check_stop) {
  if (!detok_) return std::nullopt;
  const size_t old = text_.size();
  text_ += detok_->push(token);
  if (!check_stop || stop_.empty() || text_.size() == old) return std::nullopt;
  return scan(old);
}

std::optional<std::string> TextStream::finish(bool check_stop) {
  if (!detok_) return std::nullopt;
  const size_t old = text_.size();
  text_ += detok_->flush();
  if (!check_stop || stop_.empty() || text_.size() == old) return std::nullopt;
  return scan(old);
}

std::string TextStream::take(bool final) {
  size_t end = text_.size();
  if (!final) {
    // Hold back the longest suffix that is a proper prefix of a stop string.
    size_t hold = 0;
    for (const auto& s : stop_)
      for (size_t l = std::min(s.size() - 1, text_.size()); l > hold; --l)
        if (text_.compare(text_.size() - l, l, s, 0, l) == 0) {
          hold = l;
          break;
        }
    end -= hold;
  }
  if (end <= emitted_) return {};
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

}  // namespace bitexact::engine
