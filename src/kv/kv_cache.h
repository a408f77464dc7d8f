// The paged KV cache: per layer, K and V tensors of [num_blocks, block_size, Hkv, Dh], and a
// block allocator with reference counts (blocks shared by requests with a common prefix).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace bitexact::kv {

// Hands out physical block ids. Block ids are assigned lowest-first from a sorted free list so
// that a run is reproducible; which block holds a key never changes its value (rule 1).
class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);
  int num_blocks() const { return int(ref_.size()); }
  int num_free() const { return int(free_.size()); }
  bool can_allocate(int n) const { return int(free_.size()) >= n; }
  // Throws Error(kOutOfResources) if fewer than one block is free.
  int allocate();
  void retain(int block);   // one more holder
  void release(int block);  // one fewer; the block returns to the free list at zero
  int ref_count(int block) const { return ref_[size_t(block)]; }

 private:
  std::vector<int> ref_;
  std::vector<int> free_;  // kept sorted descending so that back() is the lowest id
};

struct KvCacheShape {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
};

class KvCache {
 public:
  KvCache(const KvCacheShape& shape, Device device, DType dtype);
  const KvCacheShape& shape() const { return shape_; }
  Tensor& k(int layer) { return k_[size_t(layer)]; }
  Tensor& v(int layer) { return v_[size_t(layer)]; }
  BlockAllocator& allocator() { return allocator_; }
  size_t bytes() const;

 private:
  KvCacheShape shape_;
  std::vector<Buffer> storage_;
  std::vector<Tensor> k_, v_;
  BlockAllocator allocator_;
};

}  // namespace bitexact::kv
