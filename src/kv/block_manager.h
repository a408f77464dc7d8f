// The block manager: the reference-counted allocator plus the prefix cache. Full blocks are
// registered under hash(parent hash, block tokens); a later sequence reuses a cached block only
// if its tokens AND its parent block are identical (the hash only finds candidates). Cached
// blocks nobody holds stay resident and are evicted least-recently-used when space runs out.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "kv/kv_cache.h"

namespace bitexact::kv {

// Hash of one full block given its parent's hash (kRootHash for the first block).
uint64_t block_hash(uint64_t parent_hash, std::span<const int32_t> tokens);
constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ull;

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool enable_prefix_caching);

  int num_blocks() const { return alloc_.num_blocks(); }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return enable_; }
  // Blocks that allocate() can hand out now: free ones plus evictable cached ones.
  int num_available() const { return alloc_.num_free() + int(evictable_.size()); }
  // Blocks nobody holds (free or cached-unreferenced): equals num_blocks() when every sequence
  // has released its blocks.
  int num_unheld() const { return num_available(); }
  int num_cached() const { return int(cached_count_); }

  // A fresh block (ref 1): the lowest free id, else the least recently used cached block, which
  // then leaves the cache. Throws Error(kOutOfResources) when neither exists.
  int allocate();
  void release(int block);
  int ref_count(int block) const;  // holders, not counting the cache itself

  // The longest chain of cached blocks equal to tokens[0, max_blocks * block_size), each
  // retained for the caller. Tokens are compared, never just hashes.
  std::vector<int> match_prefix(std::span<const int32_t> tokens, int max_blocks);
  // Registers blocks[index] (held by the caller, its KV for tokens[index * block_size, +block_size)
  // fully written) as a cache entry. Call it for index 0, 1, ... in order, as blocks fill: a
  // block's hash chains from its parent's. A no-op when caching is off, the block is already
  // cached, its parent is not, or an equal entry exists (the caller keeps its private copy).
  void register_block(std::span<const int32_t> tokens, std::span<const int> blocks, int index);

  uint64_t hits() const { return hits_; }  // blocks reused through match_prefix

  // Forgets every cache entry (after a weight update their KV is stale). Unheld cached blocks
  // become free; blocks a sequence still holds stay with it, uncached.
  void clear_cache();

 private:
  struct Meta {
    bool cached = false;
    uint64_t hash = 0;
    int parent = -1;             // the block before it in the chain (-1: first block)
    uint64_t parent_gen = 0;     // the parent's generation when registered
    uint64_t gen = 0;            // bumped each time the block is reused for other content
    uint64_t last_use = 0;       // LRU tick
    std::vector<int32_t> tokens; // its block_size tokens
  };
  void evict(int block);
  int find(uint64_t hash, int parent, std::span<const int32_t> tokens) const;

  int block_size_;
  bool enable_;
  BlockAllocator alloc_;           // the cache holds one reference on every cached block
  std::vector<Meta> meta_;
  std::unordered_multimap<uint64_t, int> by_hash_;
  std::set<std::pair<uint64_t, int>> evictable_;  // (last_use, block) of cached, unheld blocks
  uint64_t tick_ = 0, hits_ = 0, cached_count_ = 0;
};

}  // namespace bitexact::kv
