// The continuous-batching scheduler: which tokens of which sequences run in the next forward.
// Decode tokens first, then prefill chunks in arrival order, under a per-step token budget and a
// cap on running sequences; KV blocks come from the BlockManager (prefix cache included), and
// when they run out the latest-arrived sequence is preempted and later recomputed. Scheduling
// changes only WHICH rows share a forward, never a row's value (ARCHITECTURE.md I1-I5, I8).
#pragma once

#include <cstdint>
#include <vector>

#include "kv/block_manager.h"

namespace bitexact::engine {

// One sequence: a prompt plus the tokens sampled so far, and its KV blocks.
struct Seq {
  uint64_t order = 0;              // arrival order: lower is served first and preempted last
  std::vector<int32_t> tokens;     // prompt + generated
  int num_prompt = 0;
  int num_computed = 0;            // tokens whose KV is in `blocks`
  std::vector<int> blocks;         // physical block of each logical block
  bool cache_lookup = true;        // false while prompt logprobs are owed (their rows need logits)
  enum class State { kWaiting, kRunning, kDone } state = State::kDone;
  uint64_t scheduled_step = 0;     // the step that last scheduled it
  int num_preemptions = 0;
  void* owner = nullptr;           // the engine's per-sample record
};

struct ScheduledChunk {
  Seq* seq = nullptr;
  int start = 0;  // first position computed
  int count = 0;  // tokens computed: [start, start + count)
};

struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<Seq*> preempted;  // moved back to waiting in this step
  int num_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, kv::BlockManager& blocks);

  void add(Seq* seq);     // queues a new sequence (seq->order must be set)
  void remove(Seq* seq);  // finished or aborted: releases its blocks, leaves every queue
  SchedulerOutput schedule();
  // After the forward of `out`: advances num_computed and registers newly full blocks in the
  // prefix cache (their KV is now written, so another sequence may read it).
  void on_computed(const SchedulerOutput& out);

  int num_running() const { return int(running_.size()); }
  int num_waiting() const { return int(waiting_.size()); }
  uint64_t num_preemptions() const { return preemptions_; }
  const kv::BlockManager& blocks() const { return blocks_; }

 private:
  bool grow(Seq* s, int count);                  // blocks for [0, num_computed + count)
  int fit(const Seq* s) const;                   // tokens that fit with the available blocks
  void preempt(Seq* s, SchedulerOutput& out);
  void release_blocks(Seq* s);
  Seq* victim_after(const Seq* s) const;         // latest unscheduled running seq after s

  SchedulerConfig config_;
  kv::BlockManager& blocks_;
  std::vector<Seq*> running_;  // sorted by order
  std::vector<Seq*> waiting_;  // sorted by order
  uint64_t step_ = 0, preemptions_ = 0;
};

}  // namespace bitexact::engine
