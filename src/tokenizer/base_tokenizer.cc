// Shared decode path: ids -> token strings (unknown ids and, on request, special tokens left
// out, as HF does) -> the decoder chain. Also the cut rule IncrementalDetokenizer relies on.
#include "tokenizer/base_tokenizer.h"

namespace bitexact::tok {

void BaseTokenizer::set_token(int32_t id, const std::string& piece, bool special) {
  if (id < 0) return;
  if (static_cast<size_t>(id) >= pieces_.size()) {
    pieces_.resize(static_cast<size_t>(id) + 1);
    flags_.resize(static_cast<size_t>(id) + 1, 0);
  }
  pieces_[id] = piece;
  flags_[id] = static_cast<uint8_t>(kExists | (special ? kSpecial : 0));
}

void BaseTokenizer::finish_tables() {
  for (size_t id = 0; id < pieces_.size(); ++id)
    if ((flags_[id] & kExists) && decoder_.self_contained(pieces_[id])) flags_[id] |= kSelfContained;
}

bool BaseTokenizer::reaches_decoder(int32_t id, bool skip_special_tokens) const {
  if (id < 0 || static_cast<size_t>(id) >= flags_.size() || !(flags_[id] & kExists)) return false;
  return !(skip_special_tokens && (flags_[id] & kSpecial));
}

std::string BaseTokenizer::id_to_token(int32_t id) const {
  if (!reaches_decoder(id, false)) return {};
  return pieces_[id];
}

bool BaseTokenizer::is_special(int32_t id) const {
  return reaches_decoder(id, false) && (flags_[id] & kSpecial);
}

std::string BaseTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return decode_run(ids, DecodeContext{}, skip_special_tokens, nullptr);
}

std::string BaseTokenizer::decode_run(std::span<const int32_t> ids, const DecodeContext& ctx,
                                      bool skip_special_tokens, bool* had_token) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids)
    if (reaches_decoder(id, skip_special_tokens)) tokens.push_back(pieces_[id]);
  if (had_token) *had_token = !tokens.empty();
  return decoder_.decode(std::move(tokens), ctx);
}

bool BaseTokenizer::can_cut_before(int32_t id, bool skip_special_tokens) const {
  // A skipped or unknown id vanishes before the decoder, so it cannot separate two byte pieces.
  return reaches_decoder(id, skip_special_tokens) && (flags_[id] & kSelfContained);
}

bool BaseTokenizer::extends_byte_group(int32_t id) const {
  return reaches_decoder(id, false) && decoder_.holds_back(pieces_[id]);
}

}  // namespace bitexact::tok
