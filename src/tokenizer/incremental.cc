// IncrementalDetokenizer: ids are decoded in runs ("segments") that start just before a token
// whose piece stands alone (complete UTF-8, not a <0xXX> byte). Decoding is additive across such
// cuts, so closed segments are final; inside the open one only text that later ids cannot change
// is returned (DecodeContext::partial). Cost per push is the open segment's length, usually 1-2.
#include "tokenizer/base_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::tok {
namespace {

const BaseTokenizer* as_base(const Tokenizer& t) { return dynamic_cast<const BaseTokenizer*>(&t); }

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  const BaseTokenizer* base = as_base(tok_);
  // A decoder chain we cannot cut (or a foreign Tokenizer) gives its text at flush() only.
  if (!base || !base->streamable()) return {};
  std::span<const int32_t> all(ids_);
  std::string out;
  const size_t n = ids_.size();
  if (n - 1 > seg_begin_ && base->can_cut_before(id, skip_special_)) {
    bool had_token = false;
    std::string text = base->decode_run(all.subspan(seg_begin_, n - 1 - seg_begin_), ctx_,
                                        skip_special_, &had_token);
    if (text.size() > seg_emitted_) out = text.substr(seg_emitted_);
    // A Strip after Fuse has used its budget once any token reached the decoder, even when
    // what it stripped left the text empty (" " -> ""), so both flags follow the tokens.
    if (had_token) ctx_.first_token = ctx_.text_start = false;
    seg_begin_ = n - 1;
    seg_emitted_ = 0;
  }
  // A growing byte group changes nothing until it ends: skip the re-decode (keeps long runs of
  // byte-fallback tokens linear instead of quadratic).
  if (out.empty() && n - 1 > seg_begin_ && base->extends_byte_group(id)) return out;
  DecodeContext partial = ctx_;
  partial.partial = true;
  std::string text = base->decode_run(all.subspan(seg_begin_), partial, skip_special_, nullptr);
  if (text.size() > seg_emitted_) {
    out += text.substr(seg_emitted_);
    seg_emitted_ = text.size();
  }
  return out;
}

std::string IncrementalDetokenizer::flush() {
  const BaseTokenizer* base = as_base(tok_);
  std::string out;
  if (!base || !base->streamable()) {
    out = tok_.decode(ids_, skip_special_);
  } else {
    std::string text =
        base->decode_run(std::span<const int32_t>(ids_).subspan(seg_begin_), ctx_, skip_special_,
                         nullptr);
    if (text.size() > seg_emitted_) out = text.substr(seg_emitted_);
  }
  ids_.clear();
  seg_begin_ = seg_emitted_ = 0;
  ctx_ = DecodeContext{};
  return out;
}

}  // namespace bitexact::tok
