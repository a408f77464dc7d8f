// token_logprob: the CPU log-softmax op over the row, then a partial sort for the top N.
#include "engine/logprobs.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/ops.h"

namespace bitexact::engine {

TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top_n, const float* given) {
  const int64_t V = int64_t(logits.size());
  std::vector<float> lp(static_cast<size_t>(V));
  if (given) {
    std::copy(given, given + V, lp.begin());
  } else {
    ops::ExecContext cpu;  // the sampler's exact call, so the two paths cannot drift apart
    Tensor in = Tensor::view(const_cast<float*>(logits.data()), DType::kF32, {1, V});
    Tensor out = Tensor::view(lp.data(), DType::kF32, {1, V});
    ops::log_softmax(cpu, in, out);
  }
  TokenLogprob r;
  r.token = token;
  r.logprob = lp[size_t(token)];
  if (top_n > 0) {
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const int n = int(std::min<int64_t>(top_n, V));
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
    for (int i = 0; i < n; ++i) r.top.emplace_back(order[size_t(i)], lp[size_t(order[size_t(i)])]);
  }
  return r;
}

}  // namespace bitexact::engine
