// A compiled PCRE2 regex (UTF + UCP, JIT) used for the `Split` pre-tokenizer, the GPT-2 ByteLevel
// pattern and `Replace` normalizers. Patterns from tokenizer.json are written for Oniguruma; the
// constructs they use (\p{L}, \p{N}, \s, (?i:...), (?!...)) mean the same in PCRE2 with UCP.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bitexact::tok {

class Regex {
 public:
  // Throws Error(kUnsupported) naming `where` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches, left to right, as [begin, end) byte offsets; empty matches are
  // skipped. `text` must be valid UTF-8. Thread-safe.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bitexact::tok
