// Added (and special) tokens are found in the text before the model sees it: leftmost-longest
// matching over a byte trie, with HF's single_word / lstrip / rstrip rules applied to each match.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bitexact::tok {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// One piece of a split: an added token's id, or -1 for text between tokens.
struct TextSplit {
  int32_t id;
  size_t begin, end;  // byte range in the split text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[k]` is what is matched for tokens[k] (its content, or its normalized content).
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);
  bool empty() const { return tokens_.empty(); }
  // Covers `text` with splits (empty ones left out), as AddedVocabulary::find_matches does.
  void split(std::string_view text, std::vector<TextSplit>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t token = -1;                                   // index into tokens_ ending here
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  bool first_byte_[256] = {};
};

}  // namespace bitexact::tok
