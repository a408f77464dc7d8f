// ops::cuda mixture-of-experts ops after the routing (moe_route.cu): the grouped expert GEMM
// (moe_kernel.cuh) and the slot-ordered combine. Nothing here syncs with the host or reads the SM
// count: grids are sized from M, k, E and N, so a decode step can be captured in a CUDA graph.
#include <atomic>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_cuda.cuh"
#include "ops/cuda/moe_common.cuh"
#include "ops/cuda/moe_kernel.cuh"

namespace bitexact::ops::cuda {
namespace {

using moe_detail::GroupsLayout;
using moe_detail::kTileLarge;
using moe_detail::kTileSmall;
using moe_detail::MoeGemmParams;
using moe_detail::tile_bound;

// Non-invariant mode: experts chosen by at most this many rows of the batch fold K in halved
// chunks (see MoeGemmParams::small_group), as cuBLAS-style heuristics change order at small M.
constexpr int kSmallGroup = 4;
// The fused SwiGLU operand lives in shared memory for all of K: used while two CTAs still fit
// on an SM (K = 768 at BN 64: 88 KB), and only for a decode step's few rows. H100, 30B-A3B
// shape (docs/notes/moe.md): batch 1 (8 rows) 3.77-3.80 -> 3.72-3.75 ms/step; batches 2/4/8
// (16-64 rows) 1-3% slower fused (every column tile recomputes the operand before its first mma).
constexpr int kSwigluMaxSmem = 110 * 1024;
constexpr int64_t kSwigluMaxRows = 8;

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

template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool kSwiglu = false>
void launch_gemm(const MoeGemmParams& p, int64_t tiles_max, cudaStream_t stream) {
  const int smem = moe_detail::moe_smem_bytes<BM, BN, BK, STAGES, kSwiglu>(p.K);
  auto kernel = moe_detail::moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, kSwiglu>;
  static std::atomic<uint64_t> attr_set{0};
  // The operand tile of kSwiglu grows with K: the limit is raised once, to the largest size used.
  allow_dynamic_smem(kernel, kSwiglu ? kSwigluMaxSmem : smem, attr_set);
  dim3 grid(unsigned(tiles_max), ceil_div(p.N, BN));
  BITEXACT_CUDA_CHECK(launch_pdl(kernel, grid, dim3(WM * WN * 32), smem, stream, p));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The operand of the expert GEMM: x itself, or (kSwigluOf) swiglu of the gate_up rows in x.
enum class Operand { kRows, kSwigluOf };

void check_moe_gemm(const Tensor& x, const Tensor& w, const Tensor& y, const char* op) {
  const int64_t N = w.dim(1), K = w.dim(2);
  if (x.dtype != DType::kBF16 || w.dtype != DType::kBF16 || y.dtype != DType::kBF16)
    unsupported(op, "x, w and y must be bf16");
  if (K % 8 != 0 || N % 8 != 0)
    unsupported(op, "N and K must be multiples of 8, got N=" + std::to_string(N) +
                        " K=" + std::to_string(K));
  if (!aligned16(x.data) || !aligned16(w.data) || !aligned16(y.data) || x.stride[0] % 8 != 0 ||
      y.stride[0] % 8 != 0)
    unsupported(op, "x, w, y must be 16-byte aligned with row strides a multiple of 8");
}

// y = expert GEMM of the operand; false when kSwigluOf has no fused path for this shape (the
// caller then materialises silu_mul and runs kRows).
bool run_moe_gemm(const ExecContext& ctx, const Tensor& x, Operand operand, const Tensor& w,
                  const MoeRouting& routing, Tensor& y, bool settled) {
  const int64_t E = routing.num_experts, R = routing.expert_ids.numel(),
                k = routing.expert_ids.dim(1);
  const int64_t N = w.dim(1), K = w.dim(2);
  const GroupsLayout at(R, E);
  const bool small_tiles = R < 32 * E;
  const bool invariant = ctx.batch_invariant;
  if (operand == Operand::kSwigluOf &&
      (!small_tiles || R > kSwigluMaxRows ||
       moe_detail::moe_smem_bytes<kTileSmall, 64, 128, 4, true>(int(K)) > kSwigluMaxSmem))
    return false;
  if (R == 0 || N == 0) return true;
  if (K == 0) {
    BITEXACT_CUDA_CHECK(cudaMemset2DAsync(y.data, y.stride[0] * 2, 0, N * 2, R, stream_of(ctx)));
    return true;
  }
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
  p.small_group = invariant ? 0 : kSmallGroup;
  p.routing_settled = settled;
  const cudaStream_t st = stream_of(ctx);
  // Tile height by the average rows per expert: speed only, every tile computes the same bits.
  if (!small_tiles) {
    p.tiles = g + at.tiles_large;
    launch_gemm<kTileLarge, 64, 64, 2, 2, 4>(p, tile_bound(R, E, kTileLarge), st);
    return true;
  }
  p.tiles = g + at.tiles_small;
  const int64_t tiles = tile_bound(R, E, kTileSmall);
  // Decode: 128-deep stages (256-byte weight row segments), as the dense GEMM at M <= 16; BK is
  // copy granularity only (kc is a multiple of 128). The non-invariant mode's halved chunks need
  // not be, so it keeps BK 64.
  if (operand == Operand::kSwigluOf) {
    if (p.small_group == 0) launch_gemm<kTileSmall, 64, 128, 1, 4, 4, true>(p, tiles, st);
    else launch_gemm<kTileSmall, 64, 64, 1, 4, 4, true>(p, tiles, st);
  } else if (p.small_group == 0) {
    launch_gemm<kTileSmall, 64, 128, 1, 4, 4>(p, tiles, st);
  } else {
    launch_gemm<kTileSmall, 64, 64, 1, 4, 4>(p, tiles, st);
  }
  return true;
}

}  // namespace

void moe_linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, const MoeRouting& routing,
                Tensor& y) {
  check_moe_gemm(x, w, y, "moe_linear");
  run_moe_gemm(ctx, x, Operand::kRows, w, routing, y, false);
}

void moe_linear_swiglu(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w,
                       const MoeRouting& routing, Tensor& h, Tensor& y) {
  check_moe_gemm(gate_up, w, y, "moe_linear_swiglu");
  // ops.h: the routing was written before the launch that produced gate_up, so it is settled.
  if (run_moe_gemm(ctx, gate_up, Operand::kSwigluOf, w, routing, y, true)) return;
  cuda::silu_mul(ctx, gate_up, h);
  check_moe_gemm(h, w, y, "moe_linear_swiglu");
  run_moe_gemm(ctx, h, Operand::kRows, w, routing, y, true);
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
