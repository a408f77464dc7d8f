// Scheduler unit tests without a model: the token budget, decodes before prefill chunks,
// first-come-first-served admission, the max_num_seqs cap, prefix-cache hits on admission,
// preemption of the latest arrival when blocks run out, and that every block comes back.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>

#include "engine/scheduler.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

struct Harness {
  kv::BlockManager blocks;
  Scheduler sched;
  std::vector<std::unique_ptr<Seq>> seqs;
  Harness(int num_blocks, int block_size, int max_seqs, int budget, bool cache = true)
      : blocks(num_blocks, block_size, cache), sched({max_seqs, budget}, blocks) {}
  Seq* add(int prompt_len, int32_t first_token = 1) {
    auto s = std::make_unique<Seq>();
    s->order = seqs.size();
    s->tokens.resize(size_t(prompt_len));
    std::iota(s->tokens.begin(), s->tokens.end(), first_token);
    s->num_prompt = prompt_len;
    sched.add(s.get());
    seqs.push_back(std::move(s));
    return seqs.back().get();
  }
  // One step: schedule, "compute", and append a token to each sequence that finished its chunk.
  SchedulerOutput step() {
    SchedulerOutput out = sched.schedule();
    sched.on_computed(out);
    for (auto& c : out.chunks)
      if (c.seq->num_computed == int(c.seq->tokens.size())) c.seq->tokens.push_back(7);
    return out;
  }
};

}  // namespace

TEST(Scheduler, ChunksPrefillUnderTheTokenBudgetInArrivalOrder) {
  Harness h(64, 4, 8, 10);
  Seq* a = h.add(7);
  Seq* b = h.add(6);
  auto o = h.step();
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].seq, a);
  EXPECT_EQ(o.chunks[0].count, 7);
  EXPECT_EQ(o.chunks[1].seq, b);
  EXPECT_EQ(o.chunks[1].count, 3);
  EXPECT_EQ(o.num_tokens, 10);
  o = h.step();  // a decodes first, then b's remaining 3 prompt tokens
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].seq, a);
  EXPECT_EQ(o.chunks[0].count, 1);
  EXPECT_EQ(o.chunks[1].seq, b);
  EXPECT_EQ(o.chunks[1].start, 3);
  EXPECT_EQ(o.chunks[1].count, 3);
}

TEST(Scheduler, DecodesComeBeforePrefillChunks) {
  Harness h(64, 4, 8, 2);
  Seq* a = h.add(2);
  h.step();                // a's prompt
  Seq* b = h.add(5);
  auto o = h.step();       // budget 2: a's decode first, then one token of b
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].seq, a);
  EXPECT_EQ(o.chunks[1].seq, b);
  EXPECT_EQ(o.chunks[1].count, 1);
}

TEST(Scheduler, CapsRunningSequences) {
  Harness h(64, 4, 2, 100);
  h.add(3), h.add(3), h.add(3);
  auto o = h.step();
  EXPECT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(h.sched.num_running(), 2);
  EXPECT_EQ(h.sched.num_waiting(), 1);
}

TEST(Scheduler, AdmissionReusesCachedPrefixBlocks) {
  Harness h(64, 4, 8, 100);
  Seq* a = h.add(9);
  h.step();
  h.sched.remove(a);
  Seq* b = h.add(10);  // same first 9 tokens: two full blocks are cached
  auto o = h.step();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, b);
  EXPECT_EQ(o.chunks[0].start, 8);
  EXPECT_EQ(o.chunks[0].count, 2);
  EXPECT_EQ(h.blocks.hits(), 2u);
}

TEST(Scheduler, PreemptsTheLatestArrivalWhenBlocksRunOut) {
  Harness h(4, 4, 8, 100, /*cache=*/false);
  Seq* a = h.add(4);
  Seq* b = h.add(8);  // a: 1 block, b: 2 blocks, 1 left
  h.step();
  h.step();  // a decodes into the last free block; b's 9th token needs a third block and none
             // is left: b, the latest arrival, is preempted (and not re-admitted in this step).
  EXPECT_GE(h.sched.num_preemptions(), 1u);
  EXPECT_EQ(b->state, Seq::State::kWaiting);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_EQ(a->state, Seq::State::kRunning);
  // Finishing a lets b back in; it recomputes prompt + generated token.
  h.sched.remove(a);
  auto o = h.step();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, b);
  EXPECT_EQ(o.chunks[0].count, 9);
}

TEST(Scheduler, EveryBlockIsFreeAfterAllSequencesLeave) {
  Harness h(12, 4, 4, 5);
  for (int i = 0; i < 6; ++i) h.add(3 + i, int32_t(i * 100));
  for (int step = 0; step < 40; ++step) {
    h.step();
    for (auto& s : h.seqs)
      if (s->state == Seq::State::kRunning && s->tokens.size() >= size_t(s->num_prompt + 6)) h.sched.remove(s.get());
  }
  for (auto& s : h.seqs) h.sched.remove(s.get());
  EXPECT_EQ(h.blocks.num_unheld(), 12);
  EXPECT_EQ(h.sched.num_running() + h.sched.num_waiting(), 0);
}
