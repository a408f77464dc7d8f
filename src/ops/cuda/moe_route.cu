// ops::cuda::moe_route: routing (f32 softmax over a token's E logits, top-k by (probability desc,
// expert id asc), optional renormalisation) and the grouping of the M*k (token, slot) rows by
// expert with the tile maps of the expert GEMM. Small batches (decode) do both in ONE CTA, one
// launch; larger ones launch a routing grid, then one grouping CTA; up to 4 tokens of <= 32 rows
// take a 4-warp CTA that groups by shuffles (group_rows_warp). All run route_token, and the two
// groupings write the same entries (integers), so the path is speed only (tests compare bits).
// Nothing syncs with the host; grids depend on M, k and E alone (CUDA-graph capturable). Kernels
// are launched with programmatic dependent launch (pdl.cuh): pdl_wait before any activation.
#include <climits>
#include <type_traits>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/moe_common.cuh"
#include "ops/cuda/moe_route.h"
#include "ops/cuda/pdl.cuh"
#include "ops/top_key.h"

namespace bitexact::ops::cuda {
namespace {

using moe_detail::GroupsLayout;
using moe_detail::kTileLarge;
using moe_detail::kTileSmall;

constexpr unsigned kFull = 0xffffffffu;
constexpr int kRouteWarps = 4;       // tokens per routing CTA (split path)
constexpr int kGroupThreads = 1024;  // the grouping CTA, and the fused CTA
constexpr int kGroupWarps = kGroupThreads / 32;
constexpr int kMaxExperts = 1024;  // 32 per lane; grouping keeps 33 ints per expert in smem
// The fused path: at most 2 tokens per warp of its 1024 threads, at most 8 experts per lane (the
// registers a 1024-thread CTA allows), and one stable-placement pass of the grouping.
constexpr int kFusedMaxTokens = 2 * kGroupWarps;
constexpr int kFusedMaxExperts = 8 * 32;
constexpr int kFusedMaxRows = kGroupThreads;
// The tiny path (decode): one warp per token, one warp groups at most 32 rows.
constexpr int kTinyMaxTokens = 4;
constexpr int kTinyMaxRows = 32;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
// A fixed xor tree over the 32 lanes: the order depends on nothing but the lane count.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Routes one token with one whole warp; lane l owns experts e = l + 32 i (i < kPer, E <= 32 kPer)
// in registers. The bits are fixed by this layout, which depends on E alone: the max (exact in
// any order); each lane sums expf(logit - max) over its experts in increasing i from +0, then
// warp_sum's xor tree; each probability is one division by that sum. Top-k: k rounds of a warp max
// over the lanes' best remaining keys (ops/top_key.h). Keys are unique per expert, so equal
// probabilities go to the lowest id and the k keys are one set in one order, whatever the search
// order. A taken key drops out, so a NaN probability cannot be taken twice (as on the CPU). The
// chosen probabilities are summed in slot order from +0 and, when `norm`, each divided by the sum.
// s_ids, s_w: the token's k slots in shared memory (the fused path groups the rows from s_ids).
template <typename T, int kPer>
__device__ __forceinline__ void route_token(const T* __restrict__ row, int E, int k, bool norm,
                                            int lane, int32_t* s_ids, float* s_w,
                                            int32_t* __restrict__ ids,
                                            float* __restrict__ weights) {
  float p[kPer];
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const bool mine = lane + 32 * i < E;
    p[i] = mine ? to_f32(row[lane + 32 * i]) : 0.f;
    if (mine) mx = fmaxf(mx, p[i]);
  }
  mx = warp_max(mx);
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    if (lane + 32 * i < E) {
      p[i] = expf(p[i] - mx);
      sum += p[i];
    }
  sum = warp_sum(sum);
  uint64_t key[kPer];  // never written after this loop: taken ones leave `avail` instead
  uint64_t best = 0;   // the lane's best remaining key; 0 is below every real key
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    key[i] = 0;
    if (lane + 32 * i < E) {
      p[i] = p[i] / sum;
      key[i] = top_key(p[i], lane + 32 * i);
    }
    best = key[i] > best ? key[i] : best;
  }
  // Bit i: key[i] not taken yet. Masks, not a write to key[winner >> 5]: an index known only at
  // run time would move both arrays to local memory.
  uint32_t avail = ~0u;
  float total = 0.f;  // the same on every lane: the chosen probabilities in slot order
  for (int s = 0; s < k; ++s) {
    // The warp's largest key by two integer reductions: probability bits, then ~column among
    // the lanes holding that probability (the lowest expert id).
    const uint32_t hi = __reduce_max_sync(kFull, uint32_t(best >> 32));
    const uint32_t lo = __reduce_max_sync(kFull, uint32_t(best >> 32) == hi ? uint32_t(best) : 0u);
    const int winner = top_key_column(uint64_t(hi) << 32 | lo);
    float w = 0.f;
    if ((winner & 31) == lane) {  // the owner takes it and finds its next best
      const uint32_t bit = 1u << (winner >> 5);
      avail &= ~bit;
      best = 0;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        w = (bit >> i & 1u) ? p[i] : w;
        best = (avail >> i & 1u) && key[i] > best ? key[i] : best;
      }
    }
    w = __shfl_sync(kFull, w, winner & 31);
    total += w;
    if (lane == 0) {
      s_ids[s] = winner;
      s_w[s] = w;
    }
  }
  __syncwarp();
  for (int s = lane; s < k; s += 32) {
    ids[s] = s_ids[s];
    weights[s] = norm ? s_w[s] / total : s_w[s];
  }
}

// Groups the R rows by expert, stably (rows ascend within an expert), and writes the tile maps
// for 16- and 64-row tiles. Integer work only, by one CTA of kGroupThreads threads, so there is
// nothing to merge. ids: global or shared memory. scratch: 33 * E ints of shared memory.
__device__ __forceinline__ void group_rows(const int32_t* ids, int R, int E,
                                           int32_t* __restrict__ groups, int64_t rows_at,
                                           int64_t small_at, int64_t large_at, int* scratch) {
  int* cursor = scratch;      // [E]: counts, then the next free entry of each expert
  int* wcount = scratch + E;  // [32 warps][E]: rows of each expert in a warp's 32-row slice
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  for (int i = tid; i < (kGroupWarps + 1) * E; i += kGroupThreads) scratch[i] = 0;
  __syncthreads();
  for (int r = tid; r < R; r += kGroupThreads) atomicAdd(&cursor[ids[r]], 1);  // integer counts
  __syncthreads();
  int32_t* rows = groups + rows_at;
  int32_t* small = groups + small_at;
  int32_t* large = groups + large_at;
  if (warp == 0) {
    // Lane l scans experts [l*per, (l+1)*per): counts, 16-row and 64-row tiles; then an exclusive
    // prefix over the lanes gives each expert's offset and first tile.
    const int per = (E + 31) / 32, e0 = min(E, lane * per), e1 = min(E, e0 + per);
    int c = 0, ts = 0, tl = 0;
    for (int e = e0; e < e1; ++e) {
      c += cursor[e];
      ts += (cursor[e] + kTileSmall - 1) / kTileSmall;
      tl += (cursor[e] + kTileLarge - 1) / kTileLarge;
    }
    int ci = c, tsi = ts, tli = tl;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int a = __shfl_up_sync(kFull, ci, o), b = __shfl_up_sync(kFull, tsi, o),
                d = __shfl_up_sync(kFull, tli, o);
      if (lane >= o) ci += a, tsi += b, tli += d;
    }
    int off = ci - c, s_at = tsi - ts, l_at = tli - tl;
    for (int e = e0; e < e1; ++e) {
      const int n = cursor[e];
      groups[e] = off;
      for (int j = 0; j * kTileSmall < n; ++j, ++s_at) {
        small[1 + 2 * s_at] = e;
        small[2 + 2 * s_at] = off + j * kTileSmall;
      }
      for (int j = 0; j * kTileLarge < n; ++j, ++l_at) {
        large[1 + 2 * l_at] = e;
        large[2 + 2 * l_at] = off + j * kTileLarge;
      }
      cursor[e] = off;
      off += n;
    }
    if (lane == 31) {
      groups[E] = off;
      small[0] = s_at;
      large[0] = l_at;
    }
  }
  __syncthreads();
  // Stable placement, 1024 rows per pass: a row's entry is its expert's cursor plus the rows of
  // that expert before it in the pass (earlier warps' counts, then earlier lanes of its warp).
  const unsigned lanes_below = (1u << lane) - 1u;
  for (int base = 0; base < R; base += kGroupThreads) {
    const int r = base + tid;
    const int id = r < R ? ids[r] : -1;
    const unsigned same = __match_any_sync(kFull, id);
    const int last = 31 - __clz(same);
    if (id >= 0 && lane == last) wcount[warp * E + id] = __popc(same);
    __syncthreads();
    int pos = 0;
    bool later = false;
    if (id >= 0) {
      int before = 0;
      for (int w = 0; w < warp; ++w) before += wcount[w * E + id];
      pos = cursor[id] + before + __popc(same & lanes_below);
      rows[pos] = r;
      if (lane == last)
        for (int w = warp + 1; w < kGroupWarps; ++w) later |= wcount[w * E + id] != 0;
    }
    __syncthreads();
    if (id >= 0 && lane == last) {
      if (!later) cursor[id] = pos + 1;  // the expert's last row of this pass moves its cursor
      wcount[warp * E + id] = 0;
    }
    __syncthreads();
  }
}

// group_rows for R <= 32 rows by one warp (lane r holds row r's expert): the same entries,
// stable rows, offsets and tile maps, from shuffles alone (integers: nothing to merge), without
// group_rows' shared counts and CTA barriers, whose latency dominates a decode step's routing.
__device__ __forceinline__ void group_rows_warp(const int32_t* s_ids, int R, int E,
                                                int32_t* __restrict__ groups, int64_t rows_at,
                                                int64_t small_at, int64_t large_at, int lane) {
  const int id = lane < R ? s_ids[lane] : INT_MAX;
  // Row r's entry: rows of smaller experts, then rows of its expert before it.
  int at = 0;
  for (int j = 0; j < R; ++j) {
    const int v = __shfl_sync(kFull, id, j);
    at += v < id || (v == id && j < lane);
  }
  if (lane < R) groups[rows_at + at] = lane;
  int32_t* small = groups + small_at;
  int32_t* large = groups + large_at;
  int s_run = 0, l_run = 0;  // tiles of the experts below `base`
  for (int base = 0; base < E; base += 32) {
    const int e = base + lane;  // experts in increasing order, 32 at a time
    int n = 0, below = 0;
    for (int j = 0; j < R; ++j) {
      const int v = __shfl_sync(kFull, id, j);
      n += v == e;
      below += v < e;
    }
    if (e < E) groups[e] = below;
    const int ts = (n + kTileSmall - 1) / kTileSmall, tl = (n + kTileLarge - 1) / kTileLarge;
    int tsi = ts, tli = tl;  // inclusive prefix over the lanes
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int a = __shfl_up_sync(kFull, tsi, o), b = __shfl_up_sync(kFull, tli, o);
      if (lane >= o) tsi += a, tli += b;
    }
    for (int j = 0, t = s_run + tsi - ts; j < ts; ++j, ++t) {
      small[1 + 2 * t] = e;
      small[2 + 2 * t] = below + j * kTileSmall;
    }
    for (int j = 0, t = l_run + tli - tl; j < tl; ++j, ++t) {
      large[1 + 2 * t] = e;
      large[2 + 2 * t] = below + j * kTileLarge;
    }
    s_run += __shfl_sync(kFull, tsi, 31);
    l_run += __shfl_sync(kFull, tli, 31);
  }
  if (lane == 0) {
    groups[E] = R;
    small[0] = s_run;
    large[0] = l_run;
  }
}

// Tiny path: warp m routes token m (M <= kTinyMaxTokens), then warp 0 groups the rows.
template <typename T, int kPer>
__global__ void __launch_bounds__(kTinyMaxTokens * 32)
    moe_route_tiny_kernel(const T* __restrict__ logits, int64_t ls, int M, int E, int k, bool norm,
                          int32_t* __restrict__ ids, float* __restrict__ weights,
                          int32_t* __restrict__ groups, int64_t rows_at, int64_t small_at,
                          int64_t large_at) {
  __shared__ int32_t s_ids[kTinyMaxRows];
  __shared__ float s_w[kTinyMaxRows];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  pdl_wait();
  pdl_launch_dependents();
  if (warp < M)
    route_token<T, kPer>(logits + int64_t(warp) * ls, E, k, norm, lane, s_ids + warp * k,
                         s_w + warp * k, ids + warp * k, weights + warp * k);
  __syncthreads();
  if (warp == 0) group_rows_warp(s_ids, M * k, E, groups, rows_at, small_at, large_at, lane);
}

// Split path, step 1: one warp per token, kRouteWarps tokens per CTA.
template <typename T, int kPer>
__global__ void __launch_bounds__(kRouteWarps * 32)
    moe_route_kernel(const T* __restrict__ logits, int64_t ls, int M, int E, int k, bool norm,
                     int32_t* __restrict__ ids, float* __restrict__ weights) {
  extern __shared__ int route_smem[];  // [kRouteWarps][k] ids, then [kRouteWarps][k] weights
  pdl_wait();
  pdl_launch_dependents();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m = blockIdx.x * kRouteWarps + warp;
  if (m >= M) return;  // whole warps only; no block-wide barrier below
  float* s_w = reinterpret_cast<float*>(route_smem + kRouteWarps * k);
  route_token<T, kPer>(logits + int64_t(m) * ls, E, k, norm, lane, route_smem + warp * k,
                       s_w + warp * k, ids + int64_t(m) * k, weights + int64_t(m) * k);
}

// Split path, step 2: one CTA groups the rows the routing grid wrote.
__global__ void __launch_bounds__(kGroupThreads)
    moe_group_kernel(const int32_t* __restrict__ ids, int R, int E, int32_t* __restrict__ groups,
                     int64_t rows_at, int64_t small_at, int64_t large_at) {
  extern __shared__ int group_smem[];  // [33 E]
  pdl_wait();
  pdl_launch_dependents();
  group_rows(ids, R, E, groups, rows_at, small_at, large_at, group_smem);
}

// Fused path: warp w routes tokens w, w + 32 (their slots kept in shared memory), then the whole
// CTA groups them. M <= kFusedMaxTokens, E <= kFusedMaxExperts, M * k <= kFusedMaxRows.
template <typename T, int kPer>
__global__ void __launch_bounds__(kGroupThreads)
    moe_route_group_kernel(const T* __restrict__ logits, int64_t ls, int M, int E, int k, bool norm,
                           int32_t* __restrict__ ids, float* __restrict__ weights,
                           int32_t* __restrict__ groups, int64_t rows_at, int64_t small_at,
                           int64_t large_at) {
  extern __shared__ int fused_smem[];  // [33 E] grouping scratch, [M*k] ids, [M*k] weights
  const int R = M * k;
  int32_t* s_ids = fused_smem + (kGroupWarps + 1) * E;
  float* s_w = reinterpret_cast<float*>(s_ids + R);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  pdl_wait();
  pdl_launch_dependents();
  for (int m = warp; m < M; m += kGroupWarps)
    route_token<T, kPer>(logits + int64_t(m) * ls, E, k, norm, lane, s_ids + m * k, s_w + m * k,
                         ids + m * k, weights + m * k);
  __syncthreads();
  group_rows(s_ids, R, E, groups, rows_at, small_at, large_at, fused_smem);
}

// Calls fn(std::integral_constant<int, kPer>) with the fewest experts per lane that hold E.
template <typename Fn>
void with_experts_per_lane(int64_t E, Fn&& fn) {
  if (E <= 4 * 32) return fn(std::integral_constant<int, 4>{});
  if (E <= 8 * 32) return fn(std::integral_constant<int, 8>{});
  if (E <= 16 * 32) return fn(std::integral_constant<int, 16>{});
  return fn(std::integral_constant<int, 32>{});
}

template <typename T>
void route_typed(const Tensor& logits, bool norm, MoeRouting& routing, MoeRoutePath path,
                 cudaStream_t stream) {
  const int64_t M = logits.dim(0), E = routing.num_experts, k = routing.expert_ids.dim(1);
  const int64_t R = M * k;
  const T* x = logits.ptr<T>();
  const int64_t ls = logits.stride[0];
  int32_t* ids = routing.expert_ids.ptr<int32_t>();
  float* weights = routing.weights.ptr<float>();
  int32_t* groups = routing.groups.ptr<int32_t>();
  const GroupsLayout at(R, E);
  const int group_smem = int((kGroupWarps + 1) * E * 4);
  if (path == MoeRoutePath::kTiny) {
    with_experts_per_lane(E, [&](auto per) {
      BITEXACT_CUDA_CHECK(launch_pdl(moe_route_tiny_kernel<T, decltype(per)::value>, dim3(1),
                                     dim3(kTinyMaxTokens * 32), 0, stream, x, ls, int(M), int(E),
                                     int(k), norm, ids, weights, groups, at.rows, at.tiles_small,
                                     at.tiles_large));
    });
    return;
  }
  if (path == MoeRoutePath::kFused) {
    with_experts_per_lane(E, [&](auto per) {
      if constexpr (decltype(per)::value * 32 <= kFusedMaxExperts)
        BITEXACT_CUDA_CHECK(launch_pdl(moe_route_group_kernel<T, decltype(per)::value>, dim3(1),
                                       dim3(kGroupThreads), size_t(group_smem + 2 * R * 4), stream,
                                       x, ls, int(M), int(E), int(k), norm, ids, weights, groups,
                                       at.rows, at.tiles_small, at.tiles_large));
    });
    return;
  }
  with_experts_per_lane(E, [&](auto per) {
    BITEXACT_CUDA_CHECK(launch_pdl(moe_route_kernel<T, decltype(per)::value>,
                                   dim3(ceil_div(M, kRouteWarps)), dim3(kRouteWarps * 32),
                                   size_t(kRouteWarps * k * 8), stream, x, ls, int(M), int(E),
                                   int(k), norm, ids, weights));
  });
  static std::atomic<uint64_t> attr_set{0};  // once, to the largest E's size: E varies by call
  allow_dynamic_smem(moe_group_kernel, (kGroupWarps + 1) * kMaxExperts * 4, attr_set);
  BITEXACT_CUDA_CHECK(launch_pdl(moe_group_kernel, dim3(1), dim3(kGroupThreads), size_t(group_smem),
                                 stream, static_cast<const int32_t*>(ids), int(R), int(E), groups,
                                 at.rows, at.tiles_small, at.tiles_large));
}

}  // namespace

bool moe_route_fused(int64_t M, int64_t E, int64_t k) {
  return M <= kFusedMaxTokens && E <= kFusedMaxExperts && M * k <= kFusedMaxRows;
}

bool moe_route_tiny(int64_t M, int64_t E, int64_t k) {
  (void)E;  // any E up to kMaxExperts: 32 experts per round of the grouping warp
  return M <= kTinyMaxTokens && M * k <= kTinyMaxRows;
}

void moe_route_path(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
                    MoeRouting& routing, MoeRoutePath path) {
  const int64_t M = router_logits.dim(0), E = routing.num_experts, k = routing.expert_ids.dim(1);
  if (E > kMaxExperts)
    unsupported("moe_route", "at most " + std::to_string(kMaxExperts) + " experts");
  if (M * k > INT32_MAX / 2) unsupported("moe_route", "too many rows");
  if (path == MoeRoutePath::kAuto) {
    path = moe_route_tiny(M, E, k)            ? MoeRoutePath::kTiny
           : moe_route_fused(M, E, k)         ? MoeRoutePath::kFused
                                              : MoeRoutePath::kSplit;
  }
  if (path == MoeRoutePath::kFused && !moe_route_fused(M, E, k))
    unsupported("moe_route", "the one-launch path takes at most " +
                                 std::to_string(kFusedMaxTokens) + " tokens, " +
                                 std::to_string(kFusedMaxExperts) + " experts and " +
                                 std::to_string(kFusedMaxRows) + " rows");
  if (path == MoeRoutePath::kTiny && !moe_route_tiny(M, E, k))
    unsupported("moe_route", "the tiny path takes at most " + std::to_string(kTinyMaxTokens) +
                                 " tokens and " + std::to_string(kTinyMaxRows) + " rows");
  if (M == 0) return;
  cudaStream_t stream = stream_of(ctx);
  if (router_logits.dtype == DType::kBF16)
    route_typed<__nv_bfloat16>(router_logits, norm_topk_prob, routing, path, stream);
  else if (router_logits.dtype == DType::kF32)
    route_typed<float>(router_logits, norm_topk_prob, routing, path, stream);
  else
    unsupported("moe_route", "router logits must be bf16 or f32");
}

void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing) {
  moe_route_path(ctx, router_logits, norm_topk_prob, routing, MoeRoutePath::kAuto);
}

}  // namespace bitexact::ops::cuda
