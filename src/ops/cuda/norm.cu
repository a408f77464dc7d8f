// CUDA RMSNorm and fused residual-add + RMSNorm (bf16 or f32 activations, f32 math).
// One CTA per row; the block size is a function of the row length D alone, and each thread sums
// squares over fixed groups of 8 elements before a fixed shuffle tree (cuda_common.cuh), so a
// row's bits never depend on how many rows the batch has.
#include <type_traits>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/norm_row.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {

using norm_row::group;
using norm_row::threads_for;

// Sum of squares of x[0, d) in the order: thread t takes 8-element groups t, t+T, ... and adds
// their elements in ascending order, then block_sum. `res` (optional) is residual: it receives
// round(res + x) and the sum runs over the rounded values, as the CPU reference does.
template <int kThreads, typename T>
__device__ float sum_squares(T* __restrict__ res, const T* __restrict__ x, int64_t d,
                             float* scratch) {
  float acc = 0.0f;
  for (int64_t g = threadIdx.x; g * 8 < d; g += kThreads) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t i = g * 8 + j;
      if (i < d) {
        float v = to_f32(x[i]);
        if (res != nullptr) {
          T r = from_f32<T>(to_f32(res[i]) + v);  // the residual stream keeps its own dtype
          res[i] = r;
          v = to_f32(r);
        }
        acc = fmaf(v, v, acc);
      }
    }
  }
  return block_sum<kThreads>(acc, scratch);
}

template <int kThreads, typename T, typename W>
__global__ void __launch_bounds__(kThreads)
    rms_norm_kernel(const T* x, RowLayout xl,   // x rows [R, D] (rank 3 rows flattened)
                    T* residual, RowLayout rl,  // residual rows or nullptr (add_rms_norm)
                    const W* __restrict__ w,    // [D]
                    T* out, RowLayout ol, int64_t d, float eps) {
  __shared__ float scratch[32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  const T* xr = x + xl.offset(r);
  T* res = residual ? residual + rl.offset(r) : nullptr;
  const float ss = sum_squares<kThreads>(res, xr, d, scratch);
  const float inv = 1.0f / sqrtf(ss / float(d) + eps);
  const T* src = res ? res : xr;  // normalise the updated residual (written by this thread)
  T* o = out + ol.offset(r);
  for (int64_t g = threadIdx.x; g * 8 < d; g += kThreads) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t i = g * 8 + j;
      if (i < d) o[i] = from_f32<T>(to_f32(w[i]) * (to_f32(src[i]) * inv));
    }
  }
}

// The same arithmetic as rms_norm_kernel for bf16 rows whose D is a multiple of 8 and whose
// rows start on 16-byte boundaries, with the row held in registers: the weights are read before
// pdl_wait (they overlap the previous kernel), x and the residual with one 16-byte load per
// 8-element group, and nothing is read twice. Thread t still takes groups t, t+T, ... and adds
// their elements in ascending order, then block_sum: equal bits to rms_norm_kernel.
template <int kThreads, int kGroups, typename W>
__global__ void __launch_bounds__(kThreads)
    rms_norm_vec_kernel(const __nv_bfloat16* x, RowLayout xl, __nv_bfloat16* residual, RowLayout rl,
                        const W* __restrict__ w, __nv_bfloat16* out, RowLayout ol, int64_t d,
                        float eps) {
  using bf16 = __nv_bfloat16;
  __shared__ float scratch[32];
  float wv[kGroups][8];
  norm_row::load_weights<kThreads>(w, d, wv);
  pdl_wait();
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  const bf16* xr = x + xl.offset(r);
  bf16* res = residual ? residual + rl.offset(r) : nullptr;
  float v[kGroups][8];
  float acc = 0.0f;
#pragma unroll
  for (int gi = 0; gi < kGroups; ++gi) {
    const int64_t g = group<kThreads>(gi);
    if (g * 8 >= d) break;
    const uint4 xp = *reinterpret_cast<const uint4*>(xr + g * 8);
    if (res != nullptr) {
      uint4 rp = *reinterpret_cast<const uint4*>(res + g * 8);
      bf16* re = reinterpret_cast<bf16*>(&rp);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        re[j] = from_f32<bf16>(to_f32(re[j]) + norm_row::elem(xp, j));
        v[gi][j] = to_f32(re[j]);
        acc = fmaf(v[gi][j], v[gi][j], acc);
      }
      *reinterpret_cast<uint4*>(res + g * 8) = rp;
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        v[gi][j] = norm_row::elem(xp, j);
        acc = fmaf(v[gi][j], v[gi][j], acc);
      }
    }
  }
  norm_row::finish<kThreads>(acc, v, wv, d, eps, scratch, out + ol.offset(r), true);
}

bool rows_aligned16(const void* base, const RowLayout& l) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && l.stride0 % 8 == 0 && l.stride1 % 8 == 0;
}

template <typename T, typename W>
void launch_norm(const ExecContext& ctx, const Tensor& x, Tensor* residual, const W* w, float eps,
                 Tensor& out) {
  const int64_t rows = num_rows(x), d = x.dim(-1);
  if (rows == 0) return;
  const T* xp = x.ptr<T>();
  T* rp = residual ? residual->ptr<T>() : nullptr;
  RowLayout rl = residual ? row_layout(*residual) : RowLayout{};
  cudaStream_t st = stream_of(ctx);
  const unsigned grid = unsigned(rows);
  const int threads = threads_for(d);
  const int64_t groups = (d / 8 + threads - 1) / threads;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (d % 8 == 0 && groups <= 4 && rows_aligned16(xp, row_layout(x)) &&
        rows_aligned16(out.data, row_layout(out)) && (rp == nullptr || rows_aligned16(rp, rl))) {
      auto vec = [&](auto kernel) {
        BITEXACT_CUDA_CHECK(launch_pdl(kernel, dim3(grid), dim3(threads), 0, st, xp, row_layout(x),
                                       rp, rl, w, out.ptr<T>(), row_layout(out), d, eps));
      };
      auto by_groups = [&](auto threads_c) {
        constexpr int kT = decltype(threads_c)::value;
        switch (groups) {
          case 1:
            vec(rms_norm_vec_kernel<kT, 1, W>);
            break;
          case 2:
            vec(rms_norm_vec_kernel<kT, 2, W>);
            break;
          case 3:
            vec(rms_norm_vec_kernel<kT, 3, W>);
            break;
          default:
            vec(rms_norm_vec_kernel<kT, 4, W>);
            break;
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
      return;
    }
  }
  auto go = [&](auto kernel, int threads) {
    BITEXACT_CUDA_CHECK(launch_pdl(kernel, dim3(grid), dim3(threads), 0, st, xp, row_layout(x), rp,
                                   rl, w, out.ptr<T>(), row_layout(out), d, eps));
  };
  switch (threads_for(d)) {
    case 32:
      go(rms_norm_kernel<32, T, W>, 32);
      break;
    case 128:
      go(rms_norm_kernel<128, T, W>, 128);
      break;
    default:
      go(rms_norm_kernel<256, T, W>, 256);
      break;
  }
}

template <typename T>
void norm_with_weight(const ExecContext& ctx, const Tensor& x, Tensor* residual,
                      const Tensor& weight, float eps, Tensor& out) {
  switch (weight.dtype) {
    case DType::kF32:
      return launch_norm<T>(ctx, x, residual, weight.ptr<float>(), eps, out);
    case DType::kBF16:
      return launch_norm<T>(ctx, x, residual, weight.ptr<__nv_bfloat16>(), eps, out);
    case DType::kF16:
      return launch_norm<T>(ctx, x, residual, weight.ptr<__half>(), eps, out);
    default:
      unsupported("rms_norm", "weight dtype I32");
  }
}

void norm(const char* op, const ExecContext& ctx, const Tensor& x, Tensor* residual,
          const Tensor& weight, float eps, Tensor& out) {
  if (x.dtype != out.dtype || (residual && residual->dtype != x.dtype))
    unsupported(op, "x, residual and out must share one dtype");
  if (x.dtype == DType::kBF16)
    return norm_with_weight<__nv_bfloat16>(ctx, x, residual, weight, eps, out);
  if (x.dtype == DType::kF32) return norm_with_weight<float>(ctx, x, residual, weight, eps, out);
  unsupported(op, "activations must be BF16 or F32");
}

}  // namespace

void rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps,
              Tensor& out) {
  norm("rms_norm", ctx, x, nullptr, weight, eps, out);
}

// residual += x (rounded to the residual's dtype), then out = rms_norm(residual). One kernel: the
// CTA of a row writes the new residual and normalises it.
void add_rms_norm(const ExecContext& ctx, Tensor& residual, const Tensor& x, const Tensor& weight,
                  float eps, Tensor& out) {
  norm("add_rms_norm", ctx, x, &residual, weight, eps, out);
}

}  // namespace bitexact::ops::cuda
