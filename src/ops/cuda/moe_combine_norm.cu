// CUDA moe_combine_add_rms_norm: the MoE block's slot-ordered combine, the residual add and the
// next RMSNorm in one kernel (a decode step saves a launch and the [M, H] round trip). Each
// element is combined as moe_combine_kernel does (moe.cu: fmaf over the slots in order from +0,
// rounded to bf16), then added and normed as rms_norm_kernel does with a residual (norm.cu: the
// same threads per row from H alone, thread t taking 8-element groups t, t+T, ..., squares added
// in ascending order, block_sum, the same final expression: norm_row.cuh, shared with norm.cu).
// So the bits are the two ops'.
#include <type_traits>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/norm_row.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kMaxGroups = 8;  // 8-element groups per thread: rows of up to 16384 at 256 threads

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

using norm_row::elem;
using norm_row::group;
using norm_row::load8;

struct CombineNormArgs {
  const bf16* y;  // [M*k, H], row stride ldy: each (token, slot)'s expert output
  int64_t ldy;
  const float* weights;  // [M, k] routing weights
  int k;
  bf16* res;  // [M, H], row stride ldr: residual, updated in place
  int64_t ldr;
  bf16* out;  // [M, H], row stride ldo: the normed rows
  int64_t ldo;
  int64_t d;  // H, a multiple of 8
  float eps;
  bool vec_y, vec_res, vec_out;  // 16-byte aligned rows: vector loads and stores
};

// One CTA of kThreads per token row; the row is held in registers (kGroups groups per thread).
template <int kThreads, int kGroups, typename W>
__global__ void __launch_bounds__(kThreads)
    moe_combine_norm_kernel(const CombineNormArgs a, const W* __restrict__ w /* [H] */) {
  __shared__ float scratch[32];
  float wv[kGroups][8];  // norm weights: no kernel writes them, read before the wait
  norm_row::load_weights<kThreads>(w, a.d, wv);
  pdl_wait();
  pdl_launch_dependents();
  const int64_t m = blockIdx.x;
  bf16* res = a.res + m * a.ldr;
  uint4 rv[kGroups];  // the residual, loaded beside the first slots
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int64_t g = group<kThreads>(gi);
    if (g * 8 < a.d) rv[gi] = load8(res + g * 8, a.vec_res);
  }
  float c[kGroups][8];  // the combine, then the updated residual, of this thread's elements
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi)
#pragma unroll
    for (int j = 0; j < 8; ++j) c[gi][j] = 0.f;
  // kChunk slots at a time: their loads are all issued before the first fma uses one (a decode
  // row costs one memory round trip per chunk, not per slot); the fmas still run in slot order.
  constexpr int kChunk = kGroups <= 2 ? 8 : kGroups <= 4 ? 4 : 2;
  for (int s0 = 0; s0 < a.k; s0 += kChunk) {
    uint4 yv[kChunk][kGroups];
    float ws[kChunk];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int s = s0 + u;
      if (s >= a.k) break;
      ws[u] = a.weights[m * a.k + s];
      const bf16* yr = a.y + (m * a.k + s) * a.ldy;
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        const int64_t g = group<kThreads>(gi);
        if (g * 8 < a.d) yv[u][gi] = load8(yr + g * 8, a.vec_y);
      }
    }
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {  // moe_combine_kernel: one fmaf per slot, in slot order
      if (s0 + u >= a.k) break;
#pragma unroll
      for (int gi = 0; gi < kGroups; ++gi) {
        const int64_t g = group<kThreads>(gi);
        if (g * 8 < a.d) {
#pragma unroll
          for (int j = 0; j < 8; ++j) c[gi][j] = fmaf(ws[u], elem(yv[u][gi], j), c[gi][j]);
        }
      }
    }
  }
  float acc = 0.0f;
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int64_t g = group<kThreads>(gi);
    if (g * 8 >= a.d) break;
    uint4 rp;
    bf16* re = reinterpret_cast<bf16*>(&rp);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float x = to_f32(from_f32<bf16>(c[gi][j]));  // moe_combine's output, rounded
      re[j] = from_f32<bf16>(elem(rv[gi], j) + x);       // add_rms_norm: the residual's dtype
      c[gi][j] = to_f32(re[j]);
      acc = fmaf(c[gi][j], c[gi][j], acc);
    }
    norm_row::store8(res + g * 8, a.vec_res, rp);
  }
  norm_row::finish<kThreads>(acc, c, wv, a.d, a.eps, scratch, a.out + m * a.ldo, a.vec_out);
}

template <typename W>
void launch(const CombineNormArgs& a, int64_t rows, const W* w, cudaStream_t stream) {
  const int threads = norm_row::threads_for(a.d);
  const int64_t groups = (a.d / 8 + threads - 1) / threads;
  auto go = [&](auto threads_c, auto groups_c) {
    constexpr int kT = decltype(threads_c)::value, kG = decltype(groups_c)::value;
    BITEXACT_CUDA_CHECK(launch_pdl(moe_combine_norm_kernel<kT, kG, W>, dim3(unsigned(rows)),
                                   dim3(kT), 0, stream, a, w));
  };
  auto by_groups = [&](auto threads_c) {
    // 32 threads take rows <= 256 (one group), 128 rows <= 2048 (two); 256 threads the rest.
    if constexpr (decltype(threads_c)::value == 32) {
      go(threads_c, std::integral_constant<int, 1>{});
    } else if constexpr (decltype(threads_c)::value == 128) {
      go(threads_c, std::integral_constant<int, 2>{});
    } else {
      if (groups <= 4)
        go(threads_c, std::integral_constant<int, 4>{});
      else
        go(threads_c, std::integral_constant<int, kMaxGroups>{});
    }
  };
  switch (threads) {
    case 32:
      by_groups(std::integral_constant<int, 32>{});
      break;
    case 128:
      by_groups(std::integral_constant<int, 128>{});
      break;
    default:
      by_groups(std::integral_constant<int, 256>{});
      break;
  }
}

}  // namespace

void moe_combine_add_rms_norm(const ExecContext& ctx, const Tensor& y, const MoeRouting& routing,
                              Tensor& residual, const Tensor& weight, float eps, Tensor& out) {
  const char* op = "moe_combine_add_rms_norm";
  if (y.dtype != DType::kBF16 || residual.dtype != DType::kBF16 || out.dtype != DType::kBF16)
    unsupported(op, "y, residual and out must be bf16");
  const int64_t M = residual.dim(0), H = residual.dim(1);
  if (H % 8 != 0)
    unsupported(op, "the row length must be a multiple of 8, got " + std::to_string(H));
  if (H > int64_t(kMaxGroups) * 8 * 256)
    unsupported(op, "rows of at most " + std::to_string(kMaxGroups * 8 * 256) + " elements");
  if (M == 0) return;
  CombineNormArgs a{};
  a.y = y.ptr<bf16>();
  a.ldy = y.stride[0];
  a.weights = routing.weights.ptr<float>();
  a.k = int(routing.expert_ids.dim(1));
  a.res = residual.ptr<bf16>();
  a.ldr = residual.stride[0];
  a.out = out.ptr<bf16>();
  a.ldo = out.stride[0];
  a.d = H;
  a.eps = eps;
  a.vec_y = aligned16(a.y) && a.ldy % 8 == 0;
  a.vec_res = aligned16(a.res) && a.ldr % 8 == 0;
  a.vec_out = aligned16(a.out) && a.ldo % 8 == 0;
  cudaStream_t stream = stream_of(ctx);
  switch (weight.dtype) {
    case DType::kF32:
      return launch(a, M, weight.ptr<float>(), stream);
    case DType::kBF16:
      return launch(a, M, weight.ptr<bf16>(), stream);
    case DType::kF16:
      return launch(a, M, weight.ptr<__half>(), stream);
    default:
      unsupported(op, "norm weight dtype I32");
  }
}

}  // namespace bitexact::ops::cuda
