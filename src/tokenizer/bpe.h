// The BPE model of tokenizer.json (byte-level and byte-fallback variants): vocabulary, ranked
// merges (as "a b" strings or ["a","b"] pairs), unk/fuse_unk, continuing_subword_prefix,
// end_of_word_suffix and ignore_merges, with a per-thread cache of tokenized words.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/components.h"

namespace bitexact::tok {

// Transparent hashing so string_view lookups do not allocate.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class Bpe {
 public:
  // `j` is tokenizer.json's "model" object (type BPE). Throws Error(kFormat) naming the problem.
  explicit Bpe(const Json& j);

  // Appends the ids of one pre-tokenized word. Thread-safe.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }
  std::optional<int32_t> token_to_id(std::string_view s) const;
  // nullptr when the id names no token of the model.
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct MergeEntry {
    uint64_t key;  // (left id << 32) | right id; kEmpty marks a free slot
    int32_t rank;
    int32_t new_id;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  // Open-addressing table: merges are looked up O(symbols) times per word, std::unordered_map's
  // node chasing was the hot spot.
  const MergeEntry* find_merge(int32_t a, int32_t b) const;
  void insert_merge(int32_t a, int32_t b, int32_t rank, int32_t new_id);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void apply_merges(std::vector<int32_t>& syms) const;

  Vocab vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::vector<MergeEntry> merges_;
  uint64_t merge_mask_ = 0;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_, suffix_;
  int32_t byte_ids_[256];  // id of "<0xXX>" for byte fallback, -1 when absent
  uint64_t instance_;      // tells this model's entries apart in the per-thread cache
};

}  // namespace bitexact::tok
