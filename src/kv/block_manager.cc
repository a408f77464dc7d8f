// BlockManager: allocation with an LRU prefix cache on top of BlockAllocator. The cache holds
// one reference on each cached block, so a cached block never reaches the free list while it is
// registered; eviction hands that reference to the new owner.
#include "kv/block_manager.h"

#include <algorithm>

#include "core/error.h"

namespace bitexact::kv {

uint64_t block_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  // splitmix64-style mixing; only a lookup key: matches are confirmed by comparing tokens.
  auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  uint64_t h = mix(parent_hash);
  for (int32_t t : tokens) h = mix(h ^ uint64_t(uint32_t(t)));
  return h;
}

BlockManager::BlockManager(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_(enable_prefix_caching), alloc_(num_blocks),
      meta_(size_t(num_blocks)) {}

int BlockManager::allocate() {
  int b;
  if (alloc_.num_free() > 0) {
    b = alloc_.allocate();
  } else if (!evictable_.empty()) {
    b = evictable_.begin()->second;  // least recently used; the cache's reference becomes ours
    evictable_.erase(evictable_.begin());
    evict(b);
  } else {
    fail(ErrorKind::kOutOfResources, "KV cache has no free block");
  }
  Meta& m = meta_[size_t(b)];
  ++m.gen;  // children registered under the old content can no longer match through it
  m.hash = 0;
  m.tokens.clear();
  return b;
}

void BlockManager::evict(int b) {
  Meta& m = meta_[size_t(b)];
  auto [lo, hi] = by_hash_.equal_range(m.hash);
  for (auto it = lo; it != hi; ++it)
    if (it->second == b) {
      by_hash_.erase(it);
      break;
    }
  m.cached = false;
  --cached_count_;
}

void BlockManager::release(int b) {
  alloc_.release(b);
  Meta& m = meta_[size_t(b)];
  if (m.cached && alloc_.ref_count(b) == 1) {
    m.last_use = ++tick_;
    evictable_.insert({m.last_use, b});
  }
}

int BlockManager::ref_count(int b) const {
  return alloc_.ref_count(b) - (meta_[size_t(b)].cached ? 1 : 0);
}

int BlockManager::find(uint64_t hash, int parent, std::span<const int32_t> tokens) const {
  auto [lo, hi] = by_hash_.equal_range(hash);
  for (auto it = lo; it != hi; ++it) {
    const Meta& m = meta_[size_t(it->second)];
    // The parent must be the very block (same id, same content generation) that matched the
    // previous block, and the tokens equal: then the whole prefix is equal, hash or no hash.
    if (m.parent != parent) continue;
    if (parent >= 0 && m.parent_gen != meta_[size_t(parent)].gen) continue;
    if (std::equal(tokens.begin(), tokens.end(), m.tokens.begin(), m.tokens.end())) return it->second;
  }
  return -1;
}

std::vector<int> BlockManager::match_prefix(std::span<const int32_t> tokens, int max_blocks) {
  std::vector<int> out;
  if (!enable_) return out;
  max_blocks = std::min<int>(max_blocks, int(tokens.size()) / block_size_);
  uint64_t h = kRootHash;
  int parent = -1;
  for (int i = 0; i < max_blocks; ++i) {
    auto blk = tokens.subspan(size_t(i) * block_size_, size_t(block_size_));
    h = block_hash(h, blk);
    int b = find(h, parent, blk);
    if (b < 0) break;
    if (alloc_.ref_count(b) == 1) evictable_.erase({meta_[size_t(b)].last_use, b});
    alloc_.retain(b);
    ++hits_;
    out.push_back(b);
    parent = b;
  }
  return out;
}

void BlockManager::register_block(std::span<const int32_t> tokens, std::span<const int> blocks,
                                  int index) {
  if (!enable_) return;
  const int b = blocks[size_t(index)];
  Meta& m = meta_[size_t(b)];
  if (m.cached) return;
  const int parent = index > 0 ? blocks[size_t(index) - 1] : -1;
  if (parent >= 0 && !meta_[size_t(parent)].cached) return;
  auto blk = tokens.subspan(size_t(index) * block_size_, size_t(block_size_));
  const uint64_t h = block_hash(parent >= 0 ? meta_[size_t(parent)].hash : kRootHash, blk);
  if (find(h, parent, blk) >= 0) return;
  m.cached = true;
  m.hash = h;
  m.parent = parent;
  m.parent_gen = parent >= 0 ? meta_[size_t(parent)].gen : 0;
  m.tokens.assign(blk.begin(), blk.end());
  by_hash_.emplace(h, b);
  alloc_.retain(b);  // the cache's own reference
  ++cached_count_;
}

void BlockManager::clear_cache() {
  for (size_t b = 0; b < meta_.size(); ++b) {
    if (!meta_[b].cached) continue;
    evict(int(b));
    ++meta_[b].gen;
    alloc_.release(int(b));  // the cache's own reference: an unheld block returns to the free list
  }
  evictable_.clear();
}

}  // namespace bitexact::kv
