// ops::cuda mixture-of-experts ops: routing (one warp per token: f32 softmax, top-k by
// (probability desc, id asc)), grouping of the (token, slot) rows by expert (one CTA, stable,
// integer arithmetic only), the grouped expert GEMM (moe_kernel.cuh) and the slot-ordered
// combine. Nothing here syncs with the host or reads the SM count: grids are sized from M, k, E
// and N, so a decode step can be captured in a CUDA graph.
#include <atomic>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_cuda.cuh"
#include "ops/cuda/moe_kernel.cuh"
#include "ops/top_key.h"

namespace bitexact::ops::cuda {
namespace {

using moe_detail::MoeGemmParams;

constexpr int kRouteWarps = 4;       // tokens per routing CTA
constexpr int kGroupThreads = 1024;  // the one grouping CTA
constexpr int kMaxExperts = 1024;    // grouping keeps 33 ints per expert in shared memory
// Non-invariant mode: experts chosen by at most this many rows of the batch fold K in halved
// chunks (see MoeGemmParams::small_group), as cuBLAS-style heuristics change order at small M.
constexpr int kSmallGroup = 4;

// Tile sizes of the two tile maps moe_route writes (ops.h's moe_groups_len reserves both).
constexpr int kTileSmall = 16, kTileLarge = 64;

int64_t tile_bound(int64_t rows, int64_t experts, int64_t tile) {
  return (rows + tile - 1) / tile + std::min(experts, rows);
}

// Where each part of the groups tensor starts (ops.h documents the first two).
struct GroupsLayout {
  int64_t offsets, rows, tiles_small, tiles_large;
  GroupsLayout(int64_t R, int64_t E) {
    offsets = 0;
    rows = E + 1;
    tiles_small = rows + R;
    tiles_large = tiles_small + 1 + 2 * tile_bound(R, E, kTileSmall);
  }
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// A fixed xor tree over the 32 lanes: the order depends on nothing but the lane count.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per token. Lane l owns experts l, l + 32, ...; the probabilities live in shared
// memory. Top-k is k rounds of a warp max over unique keys (ops/top_key.h), so equal
// probabilities go to the lowest expert id and the result does not depend on the launch shape.
template <typename T>
__global__ void __launch_bounds__(kRouteWarps * 32)
    moe_route_kernel(const T* __restrict__ logits, int64_t ls, int M, int E, int k, bool norm,
                     int32_t* __restrict__ ids, float* __restrict__ weights) {
  extern __shared__ float route_smem[];  // [kRouteWarps][E]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m = blockIdx.x * kRouteWarps + warp;
  if (m >= M) return;  // whole warps only; no block-wide barrier below
  float* p = route_smem + warp * E;
  const T* row = logits + int64_t(m) * ls;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) {
    const float v = to_f32(row[e]);
    p[e] = v;
    mx = fmaxf(mx, v);
  }
  mx = warp_max(mx);
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) {
    const float q = expf(p[e] - mx);
    p[e] = q;
    sum += q;
  }
  sum = warp_sum(sum);
  for (int e = lane; e < E; e += 32) p[e] = p[e] / sum;
  __syncwarp();
  float total = 0.f;  // lane 0: sum of the chosen probabilities in slot order
  for (int s = 0; s < k; ++s) {
    uint64_t best = 0;
    for (int e = lane; e < E; e += 32) {
      const uint64_t key = top_key(p[e], e);
      best = key > best ? key : best;
    }
    const int winner = top_key_column(warp_max_key(best));
    if (lane == 0) {
      const float w = p[winner];
      ids[int64_t(m) * k + s] = winner;
      weights[int64_t(m) * k + s] = w;
      total += w;
    }
    __syncwarp();
    if ((winner & 31) == lane) p[winner] = -INFINITY;  // below every probability left
    __syncwarp();
  }
  if (norm && lane == 0)
    for (int s = 0; s < k; ++s) weights[int64_t(m) * k + s] /= total;
}

// Groups the R rows by expert, stably (rows ascend within an expert), and writes the tile maps
// for 16- and 64-row tiles. Integer work only; one CTA, so there is nothing to merge.
__global__ void __launch_bounds__(kGroupThreads)
    moe_group_kernel(const int32_t* __restrict__ ids, int R, int E, int32_t* __restrict__ groups,
                     int64_t rows_at, int64_t small_at, int64_t large_at) {
  extern __shared__ int group_smem[];
  int* cursor = group_smem;      // [E]: counts, then the next free entry of each expert
  int* wcount = group_smem + E;  // [32 warps][E]: rows of each expert in a warp's 32-row slice
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  for (int i = tid; i < 33 * E; i += kGroupThreads) group_smem[i] = 0;
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
      const int a = __shfl_up_sync(0xffffffffu, ci, o), b = __shfl_up_sync(0xffffffffu, tsi, o),
                d = __shfl_up_sync(0xffffffffu, tli, o);
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
    const unsigned same = __match_any_sync(0xffffffffu, id);
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
        for (int w = warp + 1; w < kGroupThreads / 32; ++w) later |= wcount[w * E + id] != 0;
    }
    __syncthreads();
    if (id >= 0 && lane == last) {
      if (!later) cursor[id] = pos + 1;  // the expert's last row of this pass moves its cursor
      wcount[warp * E + id] = 0;
    }
    __syncthreads();
  }
}

// out[m, :] = sum_s weights[m, s] * y[m*k + s, :], one fma per slot in slot order, f32.
__global__ void moe_combine_kernel(const __nv_bfloat16* __restrict__ y, int64_t ldy,
                                   const float* __restrict__ weights, int k, __nv_bfloat16* out,
                                   int64_t ldo, int64_t H, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / H, h = i % H;
    float acc = 0.f;
    for (int s = 0; s < k; ++s)
      acc = fmaf(weights[m * k + s], __bfloat162float(y[(m * k + s) * ldy + h]), acc);
    out[m * ldo + h] = __float2bfloat16_rn(acc);
  }
}

// Raises a kernel's dynamic shared memory limit once per device (bit per device).
template <typename Kernel>
void allow_smem(Kernel kernel, int bytes, std::atomic<uint64_t>& done) {
  if (bytes <= 48 * 1024) return;
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  if (done.load() >> dev & 1) return;
  BITEXACT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.fetch_or(uint64_t(1) << dev);
}

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
void launch_gemm(const MoeGemmParams& p, int64_t tiles_max, cudaStream_t stream) {
  constexpr int smem = moe_detail::moe_smem_bytes<BM, BN, BK, STAGES>();
  auto kernel = moe_detail::moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES>;
  static std::atomic<uint64_t> attr_set{0};
  allow_smem(kernel, smem, attr_set);
  dim3 grid(unsigned(tiles_max), ceil_div(p.N, BN));
  kernel<<<grid, WM * WN * 32, smem, stream>>>(p);
  BITEXACT_CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void moe_route(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
               MoeRouting& routing) {
  const int64_t M = router_logits.dim(0), E = routing.num_experts, k = routing.expert_ids.dim(1);
  const int64_t R = M * k;
  if (E > kMaxExperts)
    unsupported("moe_route", "at most " + std::to_string(kMaxExperts) + " experts");
  if (R > INT32_MAX / 2) unsupported("moe_route", "too many rows");
  if (M == 0) return;
  cudaStream_t stream = stream_of(ctx);
  const int route_smem = int(kRouteWarps * E * 4);
  const unsigned blocks = ceil_div(M, kRouteWarps);
  int32_t* ids = routing.expert_ids.ptr<int32_t>();
  float* weights = routing.weights.ptr<float>();
  if (router_logits.dtype == DType::kBF16)
    moe_route_kernel<<<blocks, kRouteWarps * 32, route_smem, stream>>>(
        router_logits.ptr<__nv_bfloat16>(), router_logits.stride[0], int(M), int(E), int(k),
        norm_topk_prob, ids, weights);
  else if (router_logits.dtype == DType::kF32)
    moe_route_kernel<<<blocks, kRouteWarps * 32, route_smem, stream>>>(
        router_logits.ptr<float>(), router_logits.stride[0], int(M), int(E), int(k), norm_topk_prob,
        ids, weights);
  else
    unsupported("moe_route", "router logits must be bf16 or f32");
  BITEXACT_CUDA_CHECK_LAUNCH();

  const GroupsLayout at(R, E);
  const int group_smem = int(33 * E * 4);
  static std::atomic<uint64_t> attr_set{0};
  allow_smem(moe_group_kernel, group_smem, attr_set);
  moe_group_kernel<<<1, kGroupThreads, group_smem, stream>>>(
      ids, int(R), int(E), routing.groups.ptr<int32_t>(), at.rows, at.tiles_small, at.tiles_large);
  BITEXACT_CUDA_CHECK_LAUNCH();
}

void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, const MoeRouting& routing,
                Tensor& y) {
  const int64_t E = routing.num_experts, R = routing.expert_ids.numel(),
                k = routing.expert_ids.dim(1);
  const int64_t N = w.dim(1), K = w.dim(2);
  if (x.dtype != DType::kBF16 || w.dtype != DType::kBF16 || y.dtype != DType::kBF16)
    unsupported("moe_linear", "x, w and y must be bf16");
  if (K % 8 != 0 || N % 8 != 0)
    unsupported("moe_linear", "N and K must be multiples of 8, got N=" + std::to_string(N) +
                                  " K=" + std::to_string(K));
  if (!aligned16(x.data) || !aligned16(w.data) || !aligned16(y.data) || x.stride[0] % 8 != 0 ||
      y.stride[0] % 8 != 0)
    unsupported("moe_linear", "x, w, y must be 16-byte aligned with row strides a multiple of 8");
  if (R == 0 || N == 0) return;
  if (K == 0) {
    BITEXACT_CUDA_CHECK(cudaMemset2DAsync(y.data, y.stride[0] * 2, 0, N * 2, R, stream_of(ctx)));
    return;
  }
  const GroupsLayout at(R, E);
  const int32_t* g = routing.groups.ptr<int32_t>();
  MoeGemmParams p{};
  p.x = x.ptr<__nv_bfloat16>();
  p.w = w.ptr<__nv_bfloat16>();
  p.y = y.ptr<__nv_bfloat16>();
  p.offsets = g + at.offsets;
  p.rows = g + at.rows;
  p.ldx = x.stride[0];
  p.ldy = y.stride[0];
  p.x_div = x.dim(0) == R ? 1 : int(k);
  p.N = int(N);
  p.K = int(K);
  p.kc = linear_detail::linear_plan(N, K).kc;  // the dense GEMM's K order for this (N, K)
  p.small_group = ctx.batch_invariant ? 0 : kSmallGroup;
  // Tile height by the average rows per expert: speed only, every tile computes the same bits.
  if (R >= 32 * E) {
    p.tiles = g + at.tiles_large;
    launch_gemm<kTileLarge, 64, 64, 2, 2, 4>(p, tile_bound(R, E, kTileLarge), stream_of(ctx));
  } else {
    p.tiles = g + at.tiles_small;
    launch_gemm<kTileSmall, 64, 64, 1, 4, 4>(p, tile_bound(R, E, kTileSmall), stream_of(ctx));
  }
}

void moe_combine(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing, Tensor& out) {
  if (y.dtype != DType::kBF16 || out.dtype != DType::kBF16)
    unsupported("moe_combine", "y and out must be bf16");
  const int64_t M = out.dim(0), H = out.dim(1), n = M * H;
  if (n == 0) return;
  const unsigned blocks = std::max(1u, std::min<unsigned>(ceil_div(n, 256), 1u << 20));
  moe_combine_kernel<<<blocks, 256, 0, stream_of(ctx)>>>(
      y.ptr<__nv_bfloat16>(), y.stride[0], routing.weights.ptr<float>(),
      int(routing.expert_ids.dim(1)), out.ptr<__nv_bfloat16>(), out.stride[0], H, n);
  BITEXACT_CUDA_CHECK_LAUNCH();
}

}  // namespace bitexact::ops::cuda
