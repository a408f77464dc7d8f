// UTF-8 helpers shared by the tokenizer: validation, code point iteration, Rust-compatible lossy
// decoding (what Hugging Face `tokenizers` does with invalid bytes), and the GPT-2 byte<->char map.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace bitexact::tok {

// Byte offset of the first invalid sequence, or npos when `s` is valid UTF-8 (no surrogates, no
// overlong forms, nothing above U+10FFFF).
size_t find_invalid_utf8(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return find_invalid_utf8(s) == std::string_view::npos; }

// Length of the UTF-8 sequence that starts with lead byte `b` (1 for a stray byte).
inline size_t utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] of valid UTF-8 and advances i.
uint32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);
// True when `bytes` ends inside a sequence that more bytes could still complete (so a lossy decode
// of it would change once they arrive).
bool ends_with_incomplete_utf8(std::string_view bytes);

// GPT-2's reversible map of the 256 byte values onto printable code points (ByteLevel).
struct ByteLevelMap {
  std::array<std::string, 256> byte_to_str;  // UTF-8 of the code point standing for each byte
  std::array<int16_t, 324> cp_to_byte;       // code point (all are < 324) -> byte, or -1
};
const ByteLevelMap& byte_level_map();

}  // namespace bitexact::tok
