// libFuzzer target for the tokenizer: arbitrary bytes as text (encode must succeed on valid UTF-8
// and throw Error(kInvalidArgument) otherwise; llama3's byte-level BPE must round-trip exactly) and
// as token ids (streamed decode must equal decode). Uses the real files in ../shared.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

using bitexact::tok::Tokenizer;

// <repo>/fuzz/fuzz_tokenizer.cc -> <repo>/../shared
std::string shared_dir() {
  std::string f = __FILE__;
  return f.substr(0, f.rfind("/fuzz/")) + "/../shared";
}

const std::vector<std::unique_ptr<Tokenizer>>& tokenizers() {
  static const auto all = [] {
    std::vector<std::unique_ptr<Tokenizer>> v;
    v.push_back(bitexact::tok::load_tokenizer(shared_dir() + "/tokenizers/llama3"));
    v.push_back(bitexact::tok::load_tokenizer(shared_dir() + "/tokenizers/llama2"));
    v.push_back(bitexact::tok::load_tokenizer(shared_dir() + "/models/stories260K.gguf"));
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t which = data[0] % 3;
  const bool skip = data[1] & 1;
  const Tokenizer& tok = *tokenizers()[which];
  std::string text(reinterpret_cast<const char*>(data + 2), size - 2);

  try {
    std::vector<int32_t> ids = tok.encode(text, (data[1] & 2) != 0);
    if (!bitexact::tok::is_valid_utf8(text)) __builtin_trap();  // invalid input was accepted
    if (which == 0 && tok.decode(tok.encode(text, false), false) != text) __builtin_trap();
  } catch (const bitexact::Error& e) {
    if (e.kind() != bitexact::ErrorKind::kInvalidArgument || bitexact::tok::is_valid_utf8(text))
      __builtin_trap();
  }

  // The same bytes as ids (two bytes each), decoded whole and streamed.
  std::vector<int32_t> ids;
  const int64_t vocab = tok.vocab_size();
  for (size_t i = 2; i + 1 < size; i += 2)
    ids.push_back(static_cast<int32_t>((data[i] | (data[i + 1] << 8)) % (vocab + 8)));
  const std::string whole = tok.decode(ids, skip);
  if (!bitexact::tok::is_valid_utf8(whole)) __builtin_trap();
  bitexact::tok::IncrementalDetokenizer d(tok, skip);
  std::string streamed;
  for (int32_t id : ids) streamed += d.push(id);
  streamed += d.flush();
  if (streamed != whole) __builtin_trap();
  return 0;
}
