// CPU attention over the paged KV cache, following rule 4 of ARCHITECTURE.md: keys are visited
// in chunks of kAttentionChunk positions aligned to absolute position; each chunk gives a partial
// (max, sum, output) in ascending key order; partials merge left to right. A token's output is
// therefore a function of its query and its sequence's keys, whatever else is in the batch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/rows.h"
#include "ops/cpu/simd.h"

namespace bitexact::ops::cpu {
namespace {

struct Partial {
  float max = -INFINITY;
  float sum = 0.0f;
  std::vector<float> out;
};

// Merges `b` (the later chunk) into `a`. The one merge function of every attention kernel.
void merge(Partial& a, const Partial& b, int64_t dh) {
  float m = std::max(a.max, b.max);
  float ca = std::exp(a.max - m), cb = std::exp(b.max - m);
  a.sum = a.sum * ca + b.sum * cb;
  for (int64_t d = 0; d < dh; ++d) a.out[d] = a.out[d] * ca + b.out[d] * cb;
  a.max = m;
}

}  // namespace

void attention(const ExecContext& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const AttentionMeta& meta, float scale, Tensor& out) {
  const int64_t M = q.dim(0), hq = q.dim(1), dh = q.dim(2), hkv = k_cache.dim(2);
  const int64_t group = hq / hkv, bs = meta.block_size;
  const int32_t* seq = meta.token_seq.ptr<int32_t>();
  const int32_t* pos = meta.token_pos.ptr<int32_t>();
  const int32_t* table = meta.block_table.ptr<int32_t>();
  const int64_t table_stride = meta.block_table.stride[0];
  // Non-invariant mode picks the chunk from the batch size, as split-KV heuristics do.
  const int64_t chunk = ctx.batch_invariant ? kAttentionChunk : (M > 1 ? 32 : kAttentionChunk);
  ThreadPool& pool = ctx.pool ? *ctx.pool : default_thread_pool();

  pool.parallel_for(M * hq, 4, [&](int64_t r0, int64_t r1) {
    std::vector<float> scores(static_cast<size_t>(chunk), 0.0f);
    Partial acc, part;
    acc.out.resize(size_t(dh));
    part.out.resize(size_t(dh));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t m = r / hq, h = r % hq, kvh = h / group;
      const float* qv = row_ptr<float>(q, r);
      const int32_t* blocks = table + int64_t(seq[m]) * table_stride;
      const int64_t n_keys = int64_t(pos[m]) + 1;
      auto key_row = [&](const Tensor& cache, int64_t p) {
        int64_t b = blocks[p / bs];
        return cache.ptr<float>() + b * cache.stride[0] + (p % bs) * cache.stride[1] +
               kvh * cache.stride[2];
      };
      for (int64_t c0 = 0; c0 < n_keys; c0 += chunk) {
        const int64_t c1 = std::min(n_keys, c0 + chunk);
        Partial& dst = c0 == 0 ? acc : part;
        dst.max = -INFINITY;
        for (int64_t p = c0; p < c1; ++p) {
          scores[p - c0] = dot(qv, key_row(k_cache, p), dh) * scale;
          dst.max = std::max(dst.max, scores[p - c0]);
        }
        dst.sum = 0.0f;
        std::fill(dst.out.begin(), dst.out.end(), 0.0f);
        for (int64_t p = c0; p < c1; ++p) {
          float w = std::exp(scores[p - c0] - dst.max);
          dst.sum += w;
          const float* vv = key_row(v_cache, p);
          for (int64_t d = 0; d < dh; ++d) dst.out[d] = std::fma(w, vv[d], dst.out[d]);
        }
        if (c0 > 0) merge(acc, part, dh);
      }
      float* o = row_ptr<float>(out, r);
      for (int64_t d = 0; d < dh; ++d) o[d] = acc.out[d] / acc.sum;
    }
  });
}

}  // namespace bitexact::ops::cpu
