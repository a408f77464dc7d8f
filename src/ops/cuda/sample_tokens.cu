// CUDA sample_tokens: the exponential race of ops/sample_race.h per row, the same bits as the
// host (ops::cpu::sample_tokens, engine's Sampler). Four steps on the stream:
//  1. top_tokens with n = min(V, max(1, max_top_k)): each row's best candidate (the greedy
//     token, and mx) and its top-k candidates in (logit desc, id asc) order;
//  2. the row log-sum-exp of log_softmax (row_lse), so a logprob is x[token] - lse with the bits
//     log_softmax writes;
//  3. filtered rows (top_p / min_p, or top_k > n): the cutoff key of the kept tokens by radix
//     select (sample_select.cuh), no sort;
//  4. rows that race over the whole vocabulary (filtered rows among the keys >= their cutoff):
//     grid (rows, slices), each CTA the best race key of a column slice, and the last CTA of the
//     row to finish (integer counter) takes the max over the slices' keys. Keys are unique per
//     column, so the max is one value whatever the slicing or arrival order. Greedy and top-k
//     rows: one warp per row over the candidates.
// No step depends on other rows: each row's result is a function of its logits and parameters.
#include <algorithm>
#include <map>
#include <mutex>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/last_arrival.cuh"
#include "ops/cuda/sample_select.cuh"
#include "ops/cuda/scratch.cuh"
#include "ops/sample_race.h"

namespace bitexact::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSliceColumns = 8192;

struct RaceScratch {
  int32_t* cand_ids;  // [rows, n]
  float* cand_vals;   // [rows, n]
  uint64_t* keys;     // [rows, slices]: each slice's best race key
  int* counters;      // [rows]: finished slices; the last CTA resets it to 0
  uint64_t* cutoff;   // [rows]: a filtered row's smallest kept key (select_cutoff_kernel)
};

// n: the candidates per row of step 1.
__device__ __forceinline__ bool races_whole_row(const SampleRow& p, int64_t v, int n) {
  return p.temperature > 0.0f && (filtered_row(p, v, n) || !(p.top_k > 0 && p.top_k < v));
}

// Grid (rows, slices). Rows that do not race over the whole row return at once (all their CTAs).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    race_row_kernel(const T* __restrict__ x, int64_t xs, int64_t v, int64_t slice,
                    const SampleRow* __restrict__ prm, int n, const float* __restrict__ lse,
                    RaceScratch sc, int32_t* __restrict__ ids, float* __restrict__ lps) {
  __shared__ uint64_t warp_best[kThreads / 32];
  const int64_t r = blockIdx.x;
  const SampleRow p = prm[r];
  if (!races_whole_row(p, v, n)) return;
  const uint64_t lo = filtered_row(p, v, n) ? sc.cutoff[r] : 0;  // 0: every key races
  const int slices = gridDim.y;
  const T* row = x + r * xs;
  const float mx = sc.cand_vals[r * n];
  const int64_t c0 = blockIdx.y * slice, c1 = min(v, c0 + slice);  // c0 is a multiple of 8
  uint64_t best = 0;
  for (int64_t q0 = c0 + 4 * int64_t(threadIdx.x); q0 < c1; q0 += 4 * kThreads) {
    uint32_t w[4];
    race::race_words(p.seed, p.token_index, uint32_t(q0 >> 2), w);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (q0 + j >= c1) break;
      const float l = to_f32(row[q0 + j]);
      if (lo != 0 && top_key(l, int32_t(q0 + j)) < lo) continue;  // cut by the filters
      const float q = race::race_scaled(l, mx, p.temperature);
      const uint64_t k = race::race_key(race::race_score(q, w[j]), int32_t(q0 + j));
      best = k > best ? k : best;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  best = warp_max_key(best);
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  best = warp_max_key(lane < kThreads / 32 ? warp_best[lane] : 0);
  if (slices > 1) {
    if (threadIdx.x == 0) __stcg(sc.keys + r * slices + blockIdx.y, best);
    if (!last_to_arrive(sc.counters + r, slices)) return;
    best = 0;
    for (int i = lane; i < slices; i += 32) {
      const uint64_t k = __ldcg(sc.keys + r * slices + i);
      best = k > best ? k : best;
    }
    best = warp_max_key(best);
  }
  if (threadIdx.x != 0) return;
  const int32_t tok = best == 0 ? sc.cand_ids[r * n] : top_key_column(best);
  ids[r] = tok;
  lps[r] = __fsub_rn(to_f32(row[tok]), lse[r]);
}

// One warp per row: greedy rows take the best candidate, top-k rows race over the first k.
template <typename T>
__global__ void __launch_bounds__(32)
    race_candidates_kernel(const T* __restrict__ x, int64_t xs, int64_t v,
                           const SampleRow* __restrict__ prm, int n, const float* __restrict__ lse,
                           RaceScratch sc, int32_t* __restrict__ ids, float* __restrict__ lps) {
  const int64_t r = blockIdx.x;
  const SampleRow p = prm[r];
  if (races_whole_row(p, v, n)) return;
  const int32_t* cid = sc.cand_ids + r * n;
  const float* cval = sc.cand_vals + r * n;
  uint64_t best = 0;
  if (p.temperature > 0.0f) {
    const int k = p.top_k;  // <= n: larger ones are filtered rows
    const float mx = cval[0];
    for (int j = threadIdx.x; j < k; j += 32) {
      const int32_t id = cid[j];
      uint32_t w[4];
      race::race_words(p.seed, p.token_index, uint32_t(id) >> 2, w);
      const float q = race::race_scaled(cval[j], mx, p.temperature);
      const uint64_t key = race::race_key(race::race_score(q, w[id & 3]), id);
      best = key > best ? key : best;
    }
  }
  best = warp_max_key(best);
  if (threadIdx.x != 0) return;
  const int32_t tok = best == 0 ? cid[0] : top_key_column(best);
  ids[r] = tok;
  lps[r] = __fsub_rn(to_f32(x[r * xs + tok]), lse[r]);
}

// Per-device candidates, slice keys and counters (scratch.cuh).
RaceScratch race_scratch(int64_t rows, int n, int slices, cudaStream_t st) {
  struct Buffers {
    ScratchArray cand_ids, cand_vals, keys, counters, cutoff;
  };
  static std::mutex mu;
  static std::map<int, Buffers> per_device;
  std::lock_guard<std::mutex> lock(mu);
  Buffers& b = per_device[current_device()];
  grow_scratch(b.cand_ids, rows * n, 1 << 14, sizeof(int32_t), false, st, "sample_tokens");
  grow_scratch(b.cand_vals, rows * n, 1 << 14, sizeof(float), false, st, "sample_tokens");
  grow_scratch(b.keys, rows * slices, 1 << 14, sizeof(uint64_t), false, st, "sample_tokens");
  grow_scratch(b.counters, rows, 1024, sizeof(int), true, st, "sample_tokens");
  grow_scratch(b.cutoff, rows, 1024, sizeof(uint64_t), false, st, "sample_tokens");
  return {static_cast<int32_t*>(b.cand_ids.ptr), static_cast<float*>(b.cand_vals.ptr),
          static_cast<uint64_t*>(b.keys.ptr), static_cast<int*>(b.counters.ptr),
          static_cast<uint64_t*>(b.cutoff.ptr)};
}

template <typename T>
void launch(const ExecContext& ctx, const Tensor& x, const SampleRow* prm, Tensor& ids, Tensor& lps,
            int max_top_k) {
  cudaStream_t st = stream_of(ctx);
  const int64_t rows = x.dim(0), v = x.dim(1);
  // Candidates per row: the top-k of every row is a prefix of the top-n for any n >= k (keys are
  // unique), so n changes the cost, never a result.
  const int n = int(std::min<int64_t>(v, std::max(1, max_top_k)));
  int slices = int((v + kSliceColumns - 1) / kSliceColumns);  // a function of V alone
  const int64_t slice = ((v + slices - 1) / slices + 7) / 8 * 8;
  slices = int((v + slice - 1) / slice);
  const RaceScratch sc = race_scratch(rows, n, slices, st);
  Tensor cand_ids = Tensor::view(sc.cand_ids, DType::kI32, {rows, n}, Device::kCuda);
  Tensor cand_vals = Tensor::view(sc.cand_vals, DType::kF32, {rows, n}, Device::kCuda);
  cuda::top_tokens(ctx, x, cand_ids, cand_vals);
  const float* lse = row_lse(ctx, x);
  select_cutoff_kernel<T><<<unsigned(rows), kSelectThreads, 0, st>>>(
      x.ptr<T>(), x.stride[0], v, prm, n, sc.cand_ids, sc.cand_vals, sc.cutoff);
  BITEXACT_CUDA_CHECK_LAUNCH();
  race_row_kernel<T><<<dim3(unsigned(rows), unsigned(slices)), kThreads, 0, st>>>(
      x.ptr<T>(), x.stride[0], v, slice, prm, n, lse, sc, ids.ptr<int32_t>(), lps.ptr<float>());
  BITEXACT_CUDA_CHECK_LAUNCH();
  race_candidates_kernel<T><<<unsigned(rows), 32, 0, st>>>(x.ptr<T>(), x.stride[0], v, prm, n, lse, sc,
                                                          ids.ptr<int32_t>(), lps.ptr<float>());
  BITEXACT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sample_tokens(const ExecContext& ctx, const Tensor& logits, const Tensor& params, Tensor& ids,
                   Tensor& logprobs, int max_top_k) {
  if (logits.dim(0) == 0) return;
  const SampleRow* prm = static_cast<const SampleRow*>(params.data);
  switch (logits.dtype) {
    case DType::kBF16: return launch<__nv_bfloat16>(ctx, logits, prm, ids, logprobs, max_top_k);
    case DType::kF32: return launch<float>(ctx, logits, prm, ids, logprobs, max_top_k);
    default: unsupported("sample_tokens", "logits must be BF16 or F32");
  }
}

}  // namespace bitexact::ops::cuda
