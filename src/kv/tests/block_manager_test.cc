// BlockManager unit tests: lowest-id allocation, prefix matching that compares tokens and parent
// blocks (never the hash alone), the cache's own reference, and LRU eviction order.
#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "kv/block_manager.h"

using namespace bitexact;
using namespace bitexact::kv;

namespace {

std::vector<int32_t> seq(int n, int32_t start) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Allocates blocks for `tokens` and registers every full block, as the scheduler does.
std::vector<int> fill(BlockManager& m, const std::vector<int32_t>& tokens) {
  std::vector<int> blocks;
  for (size_t i = 0; i < tokens.size(); i += size_t(m.block_size())) blocks.push_back(m.allocate());
  for (int b = 0; b < int(tokens.size()) / m.block_size(); ++b) m.register_block(tokens, blocks, b);
  return blocks;
}

void release_all(BlockManager& m, const std::vector<int>& blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) m.release(*it);
}

}  // namespace

TEST(BlockManager, AllocatesLowestIdFirstAndRunsOut) {
  BlockManager m(3, 4, true);
  EXPECT_EQ(m.allocate(), 0);
  EXPECT_EQ(m.allocate(), 1);
  m.release(0);
  EXPECT_EQ(m.allocate(), 0);
  EXPECT_EQ(m.allocate(), 2);
  EXPECT_EQ(m.num_available(), 0);
  EXPECT_THROW(m.allocate(), Error);
}

TEST(BlockManager, MatchesFullBlocksOfAnEqualPrefix) {
  BlockManager m(8, 4, true);
  auto a = seq(10, 100);  // two full blocks + 2 tokens
  auto blocks = fill(m, a);
  EXPECT_EQ(m.num_cached(), 2);
  auto hit = m.match_prefix(a, 5);
  ASSERT_EQ(hit.size(), 2u);
  EXPECT_EQ(hit[0], blocks[0]);
  EXPECT_EQ(hit[1], blocks[1]);
  EXPECT_EQ(m.ref_count(blocks[0]), 2);  // the filler and the matcher; the cache not counted
  auto b = a;
  b[5] = 7;  // second block differs
  auto hit2 = m.match_prefix(b, 5);
  ASSERT_EQ(hit2.size(), 1u);
  EXPECT_EQ(m.match_prefix(a, 1).size(), 1u);  // max_blocks caps the match
  EXPECT_TRUE(BlockManager(8, 4, false).match_prefix(a, 5).empty());  // caching off
}

TEST(BlockManager, SameBlockTokensUnderADifferentParentDoNotMatch) {
  BlockManager m(8, 4, true);
  auto a = seq(8, 100);
  fill(m, a);
  auto b = a;
  b[0] = 1;  // first block differs, second block's tokens are equal
  EXPECT_TRUE(m.match_prefix(b, 2).empty());
}

TEST(BlockManager, CachedBlocksSurviveReleaseAndEvictLeastRecentlyUsedFirst) {
  BlockManager m(4, 2, true);
  auto a = seq(2, 10), b = seq(2, 20);
  auto ba = fill(m, a), bb = fill(m, b);
  release_all(m, ba);  // a released first: least recently used
  release_all(m, bb);
  EXPECT_EQ(m.num_available(), 4);
  EXPECT_EQ(m.num_cached(), 2);
  m.allocate();
  m.allocate();  // the two never-used blocks
  EXPECT_EQ(m.allocate(), ba[0]);  // evicts a
  EXPECT_TRUE(m.match_prefix(a, 1).empty());
  EXPECT_EQ(m.match_prefix(b, 1).size(), 1u);  // b is still cached
}

TEST(BlockManager, AChildIsUnreachableOnceItsParentIsEvicted) {
  BlockManager m(3, 2, true);
  auto a = seq(4, 10);
  auto blocks = fill(m, a);
  m.release(blocks[0]);  // parent released before the child: evicted first
  m.release(blocks[1]);
  m.allocate();          // the free block
  int evicted = m.allocate();
  EXPECT_EQ(evicted, blocks[0]);
  // Re-fill the parent's id with the same tokens: the old child must not attach to it.
  std::vector<int> again = {evicted};
  m.register_block(a, again, 0);
  auto hit = m.match_prefix(a, 2);
  EXPECT_EQ(hit.size(), 1u);
}

TEST(BlockManager, EveryBlockIsUnheldAfterReleases) {
  BlockManager m(16, 4, true);
  auto x = fill(m, seq(30, 0));
  auto hit = m.match_prefix(seq(30, 0), 7);
  release_all(m, hit);
  release_all(m, x);
  EXPECT_EQ(m.num_unheld(), 16);
}

TEST(BlockManager, ClearCacheForgetsEveryEntryAndFreesUnheldBlocks) {
  BlockManager m(6, 4, true);
  const auto a = seq(8, 0), b = seq(8, 100);
  std::vector<int> ba = fill(m, a);
  const std::vector<int> bb = fill(m, b);
  release_all(m, ba);  // a's blocks: cached, unheld; b's: cached and still held
  EXPECT_EQ(m.num_cached(), 4);
  m.clear_cache();
  EXPECT_EQ(m.num_cached(), 0);
  EXPECT_TRUE(m.match_prefix(a, 2).empty());
  EXPECT_TRUE(m.match_prefix(b, 2).empty());
  EXPECT_EQ(m.ref_count(bb[0]), 1);  // the holder keeps its block
  EXPECT_EQ(m.num_available(), 4);   // a's two blocks plus the two never used
  release_all(m, bb);
  EXPECT_EQ(m.num_available(), 6);
  EXPECT_EQ(m.allocate(), 0);        // free again, lowest id first
}
