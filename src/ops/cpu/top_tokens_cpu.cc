// CPU top_tokens: per row, a partial sort of the columns by top_key (value desc, column asc).
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/top_key.h"

namespace bitexact::ops::cpu {

void top_tokens(const ExecContext& ctx, const Tensor& x, Tensor& ids, Tensor& vals) {
  const int64_t V = x.dim(1), n = ids.dim(1);
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();
  pool.parallel_for(x.dim(0), 1, [&](int64_t r0, int64_t r1) {
    std::vector<uint64_t> keys(static_cast<size_t>(V));
    for (int64_t r = r0; r < r1; ++r) {
      auto value = [&](int64_t i) {
        return x.dtype == DType::kF32 ? x.ptr<float>()[r * x.stride[0] + i]
                                      : bf16_to_f32(x.ptr<uint16_t>()[r * x.stride[0] + i]);
      };
      for (int64_t i = 0; i < V; ++i) keys[size_t(i)] = top_key(value(i), int32_t(i));
      std::partial_sort(keys.begin(), keys.begin() + n, keys.end(), std::greater<uint64_t>());
      for (int64_t j = 0; j < n; ++j) {
        const int32_t col = top_key_column(keys[size_t(j)]);
        ids.ptr<int32_t>()[r * n + j] = col;
        vals.ptr<float>()[r * n + j] = value(col);
      }
    }
  });
}

}  // namespace bitexact::ops::cpu
