// BPE encoding as HF tokenizers does it: a word's characters become symbols (or <0xXX> byte
// tokens, or unk), then merges are applied lowest rank first, leftmost first among equal ranks,
// through a binary heap with lazy deletion. Stale heap entries are checked exactly as HF checks
// them (same new id), so even vocabularies with several merges to one token give HF's ids.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace bitexact::tok {
namespace {

constexpr const char* kWhere = "tokenizer.json model (BPE)";
constexpr size_t kMaxCachedWordBytes = 256;     // HF's cache limit too: long words are rare
constexpr size_t kMaxCacheEntries = 1u << 17;  // per thread; cleared when full

std::atomic<uint64_t> g_next_instance{1};

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

struct WordCache {
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
};

WordCache& thread_cache(uint64_t instance) {
  thread_local std::unordered_map<uint64_t, WordCache> caches;
  return caches[instance];
}

}  // namespace

Bpe::Bpe(const Json& j) : instance_(g_next_instance++) {
  const Json& vocab = json_at(j, "vocab", kWhere);
  if (!vocab.is_object()) fail(ErrorKind::kFormat, std::string(kWhere) + ": `vocab` must be an object");
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1 << 30))
      fail(ErrorKind::kFormat, std::string(kWhere) + ": id of token `" + it.key() + "` is not a valid id");
    int32_t id = it.value().get<int32_t>();
    vocab_.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : vocab_) {
    id_to_token_[id] = tok;
    has_id_[id] = true;
  }
  auto str_or_empty = [&](const char* key) {
    return j.contains(key) && j.at(key).is_string() ? j.at(key).get<std::string>() : std::string();
  };
  prefix_ = str_or_empty("continuing_subword_prefix");
  suffix_ = str_or_empty("end_of_word_suffix");
  fuse_unk_ = j.value("fuse_unk", false);
  byte_fallback_ = j.value("byte_fallback", false);
  ignore_merges_ = j.value("ignore_merges", false);
  if (j.contains("dropout") && j.at("dropout").is_number() && j.at("dropout").get<double>() > 0)
    fail(ErrorKind::kUnsupported, std::string(kWhere) + ": BPE dropout is not supported (it is random)");
  std::string unk = str_or_empty("unk_token");
  if (!unk.empty()) {
    auto it = vocab_.find(unk);
    if (it == vocab_.end())
      fail(ErrorKind::kFormat, std::string(kWhere) + ": unk_token `" + unk + "` is not in the vocab");
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(std::string_view(name));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  const Json& merges = json_at(j, "merges", kWhere);
  if (!merges.is_array()) fail(ErrorKind::kFormat, std::string(kWhere) + ": `merges` must be an array");
  size_t cap = 16;
  while (cap < merges.size() * 2) cap <<= 1;
  merges_.assign(cap, MergeEntry{kEmpty, 0, 0});
  merge_mask_ = cap - 1;
  int32_t rank = 0;
  for (const Json& m : merges) {
    std::string a, b;
    if (m.is_string()) {
      // HF splits the line on ' ' and wants exactly two parts.
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail(ErrorKind::kFormat, std::string(kWhere) + ": merge " + std::to_string(rank) + " `" + s +
                                     "` is not two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail(ErrorKind::kFormat, std::string(kWhere) + ": merge " + std::to_string(rank) +
                                   " must be a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    std::string merged = a + b.substr(std::min(prefix_.size(), b.size()));
    auto im = vocab_.find(merged);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end())
      fail(ErrorKind::kFormat, std::string(kWhere) + ": merge " + std::to_string(rank) + " (`" + a +
                                   "` `" + b + "`) uses a token missing from the vocab");
    insert_merge(ia->second, ib->second, rank, im->second);
    ++rank;
  }
}

void Bpe::insert_merge(int32_t a, int32_t b, int32_t rank, int32_t new_id) {
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  for (uint64_t h = mix(key) & merge_mask_;; h = (h + 1) & merge_mask_) {
    MergeEntry& e = merges_[h];
    if (e.key == kEmpty || e.key == key) {
      // A repeated pair keeps the later rank, as HF's HashMap collect does.
      e = MergeEntry{key, rank, new_id};
      return;
    }
  }
}

const Bpe::MergeEntry* Bpe::find_merge(int32_t a, int32_t b) const {
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  for (uint64_t h = mix(key) & merge_mask_;; h = (h + 1) & merge_mask_) {
    const MergeEntry& e = merges_[h];
    if (e.key == key) return &e;
    if (e.key == kEmpty) return nullptr;
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view s) const {
  auto it = vocab_.find(s);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void Bpe::apply_merges(std::vector<int32_t>& syms) const {
  const size_t n = syms.size();
  if (n < 2) return;
  struct Cand {
    int32_t rank, pos, new_id;
  };
  // Min-heap on (rank, pos): the lowest rank merges first, the leftmost one among equals.
  auto worse = [](const Cand& x, const Cand& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  thread_local std::vector<Cand> heap;
  thread_local std::vector<int32_t> next, prev;
  thread_local std::vector<char> alive;
  heap.clear();
  next.resize(n);
  prev.resize(n);
  alive.assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    prev[i] = static_cast<int32_t>(i) - 1;
  }
  auto push = [&](int32_t pos) {
    int32_t nx = next[pos];
    if (nx < 0) return;
    if (const MergeEntry* m = find_merge(syms[pos], syms[nx])) {
      heap.push_back(Cand{m->rank, pos, m->new_id});
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    Cand c = heap.back();
    heap.pop_back();
    if (!alive[c.pos]) continue;
    int32_t nx = next[c.pos];
    if (nx < 0) continue;
    const MergeEntry* m = find_merge(syms[c.pos], syms[nx]);
    if (!m || m->new_id != c.new_id) continue;  // stale entry: the pair changed since
    syms[c.pos] = c.new_id;
    alive[nx] = 0;
    next[c.pos] = next[nx];
    if (next[nx] >= 0) prev[next[nx]] = c.pos;
    if (prev[c.pos] >= 0) push(prev[c.pos]);
    push(c.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) syms[w++] = syms[i];
  syms.resize(w);
}

void Bpe::merge_word(std::string_view word, std::vector<int32_t>& syms) const {
  syms.clear();
  std::optional<int32_t> pending_unk;
  std::string buf;
  for (size_t i = 0; i < word.size();) {
    size_t len = utf8_len(static_cast<unsigned char>(word[i]));
    std::string_view ch = word.substr(i, len);
    bool first = i == 0, last = i + len >= word.size();
    i += len;
    std::string_view s = ch;
    if ((!first && !prefix_.empty()) || (last && !suffix_.empty())) {
      buf.assign(first ? "" : prefix_);
      buf.append(ch);
      if (last) buf.append(suffix_);
      s = buf;
    }
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (pending_unk) syms.push_back(*pending_unk);
      pending_unk.reset();
      syms.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_ids_[b] >= 0;
      if (all) {
        // HF adds the bytes without flushing a pending unk first; keep that order.
        for (unsigned char b : s) syms.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) syms.push_back(*pending_unk);
      pending_unk = unk_id_;
    }
  }
  if (pending_unk) syms.push_back(*pending_unk);
  apply_merges(syms);
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  if (word.size() >= kMaxCachedWordBytes) {
    merge_word(word, syms);
    out.insert(out.end(), syms.begin(), syms.end());
    return;
  }
  WordCache& cache = thread_cache(instance_);
  auto it = cache.map.find(word);
  if (it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  merge_word(word, syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cache.map.size() >= kMaxCacheEntries) cache.map.clear();
  cache.map.emplace(std::string(word), syms);
}

}  // namespace bitexact::tok
