// CPU sample_tokens: per row, the greedy token (temperature 0), or the exponential race of
// ops/sample_race.h over the top_k tokens by top_key (logit desc, id asc) or over the whole row;
// with top_p / min_p, over the sorted prefix ops/sample_filter.h keeps (the host sampler's code).
// The logprob is read from cpu::log_softmax of the row, so it has the bits ops::log_softmax gives.
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/sample_filter.h"
#include "ops/sample_race.h"
#include "ops/top_key.h"

namespace bitexact::ops::cpu {

void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int /*max_top_k: checked by dispatch; sizes nothing here*/) {
  const int64_t R = logits.dim(0), V = logits.dim(1);
  if (R == 0) return;
  // f32 rows and their log-softmax.
  std::vector<float> f32;
  const Tensor x = f32_rows(logits, f32);
  std::vector<float> lp(size_t(R * V));
  Tensor lpt = Tensor::view(lp.data(), DType::kF32, {R, V});
  cpu::log_softmax(ctx, x, lpt);

  const SampleRow* prm = static_cast<const SampleRow*>(params.data);
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  pool.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
    std::vector<uint64_t> keys;
    std::vector<int32_t> cand;
    std::vector<uint64_t> weights;
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x.ptr<float>() + r * x.stride[0];
      const SampleRow& p = prm[r];
      // The best candidate by top_key: the greedy token, and mx for the race.
      uint64_t best_key = 0;
      int32_t best = 0;
      for (int64_t i = 0; i < V; ++i) {
        const uint64_t k = top_key(row[i], int32_t(i));
        if (k > best_key) best_key = k, best = int32_t(i);
      }
      int32_t tok = best;
      if (p.temperature > 0.0f) {
        const race::RaceHostRow rr{row, V, p.temperature, p.seed, p.token_index};
        const bool top_k = p.top_k > 0 && p.top_k < V;
        if (p.top_p_units || p.min_p_units) {
          // The sorted row, top_k, then the filters of sample_filter.h: Sampler::draw_sorted's code.
          keys.resize(size_t(V));
          for (int64_t i = 0; i < V; ++i) keys[size_t(i)] = top_key(row[i], int32_t(i));
          const int64_t k = top_k ? p.top_k : V;
          if (top_k)
            std::partial_sort(keys.begin(), keys.begin() + k, keys.end(), std::greater<uint64_t>());
          else
            std::sort(keys.begin(), keys.end(), std::greater<uint64_t>());
          cand.resize(size_t(k));
          for (int64_t j = 0; j < k; ++j) cand[size_t(j)] = top_key_column(keys[size_t(j)]);
          weights.resize(size_t(k));
          const int64_t keep = filter::filter_sorted(k, p.temperature, p.top_p_units, p.min_p_units,
                                                     weights.data(), [&](int64_t j) { return row[cand[size_t(j)]]; });
          tok = race::race_candidates(rr, cand.data(), keep, best);
        } else if (top_k) {
          keys.resize(size_t(V));
          for (int64_t i = 0; i < V; ++i) keys[size_t(i)] = top_key(row[i], int32_t(i));
          std::partial_sort(keys.begin(), keys.begin() + p.top_k, keys.end(), std::greater<uint64_t>());
          cand.resize(size_t(p.top_k));
          for (int j = 0; j < p.top_k; ++j) cand[size_t(j)] = top_key_column(keys[size_t(j)]);
          tok = race::race_candidates(rr, cand.data(), p.top_k, best);
        } else {
          tok = race::race_row(rr, nullptr, best);
        }
      }
      ids.ptr<int32_t>()[r] = tok;
      logprobs.ptr<float>()[r] = lp[size_t(r * V + tok)];
    }
  });
}

}  // namespace bitexact::ops::cpu
