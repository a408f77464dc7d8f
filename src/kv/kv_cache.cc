// KvCache storage and the reference-counted block allocator.
#include "kv/kv_cache.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace bitexact::kv {

BlockAllocator::BlockAllocator(int num_blocks) : ref_(static_cast<size_t>(num_blocks), 0) {
  free_.reserve(size_t(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int BlockAllocator::allocate() {
  if (free_.empty()) fail(ErrorKind::kOutOfResources, "KV cache has no free block");
  int b = free_.back();
  free_.pop_back();
  ref_[size_t(b)] = 1;
  return b;
}

void BlockAllocator::retain(int block) {
  BITEXACT_CHECK(ref_[size_t(block)] > 0, "retain of a free block");
  ++ref_[size_t(block)];
}

void BlockAllocator::release(int block) {
  BITEXACT_CHECK(ref_[size_t(block)] > 0, "release of a free block " + std::to_string(block));
  if (--ref_[size_t(block)] == 0) {
    // Insert keeping descending order, so allocation stays lowest-id-first.
    free_.insert(std::upper_bound(free_.begin(), free_.end(), block, std::greater<int>()), block);
  }
}

KvCache::KvCache(const KvCacheShape& shape, Device device, DType dtype)
    : shape_(shape), allocator_(shape.num_blocks) {
  const int64_t per = int64_t(shape.num_blocks) * shape.block_size * shape.num_kv_heads * shape.head_dim;
  for (int l = 0; l < shape.num_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      storage_.emplace_back(size_t(per) * dtype_size(dtype), device);
      Tensor t = storage_.back().as(dtype, {shape.num_blocks, shape.block_size, shape.num_kv_heads,
                                            shape.head_dim});
      (kv == 0 ? k_ : v_).push_back(t);
    }
  }
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (const auto& b : storage_) total += b.size();
  return total;
}

}  // namespace bitexact::kv
