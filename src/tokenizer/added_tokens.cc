// Leftmost-longest added-token matching (what HF's aho-corasick with MatchKind::LeftmostLongest
// finds) and the single_word / lstrip / rstrip adjustments of AddedVocabulary::find_matches.
#include "tokenizer/added_tokens.h"

#include <algorithm>
#include <utf8proc.h>

#include "tokenizer/utf8.h"

namespace bitexact::tok {
namespace {

bool is_space(uint32_t c) {  // Unicode White_Space, Rust regex's \s
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool is_word_char(uint32_t c) {  // Rust regex's Unicode \w, from general categories
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// Start of the code point that ends just before byte `end`.
size_t prev_char(std::string_view s, size_t end) {
  size_t j = end - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  return j;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens,
                                     std::vector<std::string> patterns)
    : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const std::string& p = patterns[k];
    if (p.empty()) continue;
    first_byte_[static_cast<unsigned char>(p[0])] = true;
    int32_t node = 0;
    for (unsigned char b : p) {
      int32_t c = child(node, b);
      if (c < 0) {
        c = static_cast<int32_t>(trie_.size());
        trie_.emplace_back();
        auto& nx = trie_[node].next;
        nx.insert(std::lower_bound(nx.begin(), nx.end(), std::make_pair(b, int32_t{-1})),
                  {b, c});
      }
      node = c;
    }
    // The first pattern given wins on duplicates, as aho-corasick reports the lowest pattern id.
    if (trie_[node].token < 0) trie_[node].token = static_cast<int32_t>(k);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char b) const {
  const auto& nx = trie_[node].next;
  auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(b, int32_t{-1}));
  return it != nx.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSplit>& out) const {
  out.clear();
  size_t start_offset = 0;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    // Longest match starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      node = child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      if (trie_[node].token >= 0) {
        best = trie_[node].token;
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = best_end;
    i = best_end;  // matches never overlap, even when the one found is discarded below
    const AddedToken& t = tokens_[best];
    if (t.single_word) {
      bool start_ok = true, stop_ok = true;
      if (start > 0) {
        size_t k = prev_char(text, start);
        start_ok = !is_word_char(next_code_point(text, k));
      }
      if (stop < n) {
        size_t k = stop;
        stop_ok = !is_word_char(next_code_point(text, k));
      }
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t k = prev_char(text, s), k2 = k;
        if (!is_space(next_code_point(text, k2))) break;
        s = k;
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        size_t k = stop;
        if (!is_space(next_code_point(text, k))) break;
        stop = k;
      }
      i = std::max(i, stop);
    }
    if (start_offset < start) out.push_back({-1, start_offset, start});
    out.push_back({t.id, start, stop});
    start_offset = stop;
  }
  if (start_offset < n) out.push_back({-1, start_offset, n});
}

}  // namespace bitexact::tok
