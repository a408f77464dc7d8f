// Scheduler: three passes per step (running decodes, running prefill chunks, admissions from
// the waiting queue), each in arrival order. A sequence's rows never depend on this plan: the
// kernels are batch-invariant, so the plan only decides speed and memory use.
#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace bitexact::engine {
namespace {

bool by_order(const Seq* a, const Seq* b) { return a->order < b->order; }

void insert_sorted(std::vector<Seq*>& v, Seq* s) {
  v.insert(std::upper_bound(v.begin(), v.end(), s, by_order), s);
}

void erase(std::vector<Seq*>& v, Seq* s) {
  auto it = std::lower_bound(v.begin(), v.end(), s, by_order);
  if (it != v.end() && *it == s) v.erase(it);
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, kv::BlockManager& blocks)
    : config_(config), blocks_(blocks) {}

void Scheduler::add(Seq* s) {
  s->state = Seq::State::kWaiting;
  insert_sorted(waiting_, s);
}

void Scheduler::release_blocks(Seq* s) {
  // Tail first: with LRU eviction the deepest blocks of a chain go before its root, so a
  // shorter cached prefix stays usable as long as possible.
  for (auto it = s->blocks.rbegin(); it != s->blocks.rend(); ++it) blocks_.release(*it);
  s->blocks.clear();
  s->num_computed = 0;
}

void Scheduler::remove(Seq* s) {
  if (s->state == Seq::State::kRunning) erase(running_, s);
  if (s->state == Seq::State::kWaiting) erase(waiting_, s);
  release_blocks(s);
  s->state = Seq::State::kDone;
}

int Scheduler::fit(const Seq* s) const {
  const int bs = blocks_.block_size();
  return int(s->blocks.size()) * bs + blocks_.num_available() * bs - s->num_computed;
}

bool Scheduler::grow(Seq* s, int count) {
  const int bs = blocks_.block_size();
  const int need = (s->num_computed + count + bs - 1) / bs - int(s->blocks.size());
  if (need > blocks_.num_available()) return false;
  for (int i = 0; i < need; ++i) s->blocks.push_back(blocks_.allocate());
  return true;
}

void Scheduler::preempt(Seq* s, SchedulerOutput& out) {
  // Recompute, not swap: the sequence returns to waiting with its tokens and sampling state,
  // and later recomputes prompt + generated tokens. Its next token is drawn with the same
  // (seed, index) from logits that are bitwise those it would have had (I6, I8).
  erase(running_, s);
  release_blocks(s);
  s->state = Seq::State::kWaiting;
  ++s->num_preemptions;
  ++preemptions_;
  insert_sorted(waiting_, s);
  out.preempted.push_back(s);
}

Seq* Scheduler::victim_after(const Seq* s) const {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if ((*it)->order <= s->order) return nullptr;
    if ((*it)->scheduled_step != step_) return *it;
  }
  return nullptr;
}

SchedulerOutput Scheduler::schedule() {
  ++step_;
  SchedulerOutput out;
  int budget = config_.max_num_batched_tokens;
  // Passes 1 and 2: running sequences, decodes (one token left) before prefill chunks.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      Seq* s = running_[i];
      const int rem = int(s->tokens.size()) - s->num_computed;
      if ((pass == 0) != (rem == 1) || s->scheduled_step == step_) continue;
      int k = std::min(rem, budget);
      bool self_preempted = false;
      while (!grow(s, k)) {
        if (pass == 1 && fit(s) > 0) {  // a shorter chunk fits: take it rather than preempt
          k = std::min(k, fit(s));
          continue;
        }
        Seq* v = victim_after(s);
        if (!v) {
          preempt(s, out);
          self_preempted = true;
          break;
        }
        preempt(v, out);
      }
      if (self_preempted) {
        --i;
        continue;
      }
      s->scheduled_step = step_;
      out.chunks.push_back({s, s->num_computed, k});
      budget -= k;
    }
  }
  // Pass 3: admissions, first come first served: if the head does not fit, nobody behind it
  // jumps the queue. None in a step that preempted: the blocks just freed would be refilled at
  // once and the preempted sequence recomputed while the pressure lasts (thrashing).
  while (out.preempted.empty() && budget > 0 && !waiting_.empty() && int(running_.size()) < config_.max_num_seqs) {
    Seq* s = waiting_.front();
    const int bs = blocks_.block_size();
    if (s->cache_lookup && s->blocks.empty()) {
      // At least the last token is computed: its logits give the next token.
      s->blocks = blocks_.match_prefix(s->tokens, (int(s->tokens.size()) - 1) / bs);
      s->num_computed = int(s->blocks.size()) * bs;
    }
    const int k = std::min({int(s->tokens.size()) - s->num_computed, budget, fit(s)});
    if (k <= 0 || !grow(s, k)) {
      release_blocks(s);
      break;
    }
    waiting_.erase(waiting_.begin());
    s->state = Seq::State::kRunning;
    s->scheduled_step = step_;
    insert_sorted(running_, s);
    out.chunks.push_back({s, s->num_computed, k});
    budget -= k;
  }
  for (const auto& c : out.chunks) out.num_tokens += c.count;
  return out;
}

void Scheduler::on_computed(const SchedulerOutput& out) {
  const int bs = blocks_.block_size();
  for (const auto& c : out.chunks) {
    Seq* s = c.seq;
    BITEXACT_CHECK(s->num_computed == c.start, "chunk does not continue its sequence");
    const int full_before = s->num_computed / bs;
    s->num_computed += c.count;
    for (int b = full_before; b < s->num_computed / bs; ++b) blocks_.register_block(s->tokens, s->blocks, b);
  }
}

}  // namespace bitexact::engine
