// Internals of ops::cuda::linear shared by linear.cu, linear_cublaslt.cu, the linear tests and
// bench_gemm: the K-chunk plan (a function of N and K only), the selectable code paths, and a
// CUDA error-check macro private to the GEMM files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "ops/ops.h"

#define LINEAR_CUDA_CHECK(expr)                                                          \
  do {                                                                                   \
    cudaError_t linear_err_ = (expr);                                                    \
    if (linear_err_ != cudaSuccess)                                                      \
      ::bitexact::fail(::bitexact::ErrorKind::kInternal,                                 \
                       std::string("linear: ") + #expr + ": " + cudaGetErrorString(linear_err_)); \
  } while (0)

namespace bitexact::ops::cuda::linear_detail {

// How K is cut for every output element: chunks of kc (multiple of 64) merged left to right.
// Chosen from (N, K) alone, so every M, path and batch composition sums in the same order.
struct LinearPlan {
  int kc = 0;  // chunk length in K elements, a multiple of 128
  int S = 0;   // number of chunks, ceil(K / kc)
};
LinearPlan linear_plan(int64_t N, int64_t K);

// The code paths of the invariant GEMM. kAuto picks by M for speed; the others force one tile
// configuration (tests use them to prove that every pair of paths gives equal bits).
enum class LinearPath {
  kAuto,
  kSmallSplit,  // BM 16/32/64 by M, BN 64, one K chunk per CTA, in-order fold by the last CTA
  kSmallFused,  // BM 16/32/64 by M, BN 64, one CTA walks all chunks, fold in registers
  kMedium,      // BM 64, BN 128, fused
  kLarge,       // BM 128, BN 128, fused
  kSmallWide,   // BM 32/64 by M, BN 128, 8 warps, split when S > 1
  kWgmma,       // Hopper wgmma + TMA, BM 64/128 x BN 64..256 by shape, fused (gemm/wgmma_*)
  kSmallCluster,  // M <= 16, S = 2..4: small_split's CTAs as a cluster, the fold over DSMEM
};
const char* linear_path_name(LinearPath path);
// The path kAuto takes for this shape (for logs and benches). Where it says kSmallSplit at
// M <= 16 with 2..4 chunks, kAuto runs kSmallCluster's kernel (unless switched off below).
LinearPath linear_auto_path(int64_t M, int64_t N, int64_t K);
// Whether kAuto folds split chunks in a cluster (default on; off for same-binary A/B timing).
void set_linear_cluster_fold(bool on);
}  // namespace bitexact::ops::cuda::linear_detail
namespace bitexact::ops::cuda {
// Off: norm_linear_fuses / swiglu_linear_fuses answer false, so the model runs the norm / silu_mul
// as its own op (A/B timing).
void set_norm_linear_fusion(bool on);
void set_swiglu_linear_fusion(bool on);
}  // namespace bitexact::ops::cuda
namespace bitexact::ops::cuda::linear_detail {

// Checks dtypes, devices, strides and 16-byte alignment; throws kInvalidArgument otherwise.
void check_linear_args(const Tensor& x, const Tensor& w, const Tensor& y);

// Batch-invariant GEMM along `path`. Uses a per-device workspace that grows on the first call
// for a shape (must not be inside a graph capture); later calls neither allocate nor sync.
// The split workspace is one per device: two streams must not run split-path GEMMs at once.
// plan_rows > 0: cut K as linear_plan(plan_rows, K) would (tensor-parallel column shards).
void linear_invariant(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y,
                      LinearPath path = LinearPath::kAuto, int64_t plan_rows = 0);

// The per-device split-K workspace (chunk partials, zeroed arrival counters) of the split paths,
// grown to at least `floats` / `counters` (never inside a graph capture: throws there). Shared by
// the mma.sync split path and the wgmma split tiles; kernels of one stream never overlap on it.
struct SplitBuffers {
  float* partial = nullptr;
  int* counters = nullptr;
};
// The norm-fused decode GEMM (ops::norm_linear) on `path` (kAuto: linear_invariant's choice;
// kSmallFused, kSmallSplit or kSmallCluster forced, for tests).
bool norm_linear_fits(int64_t M, int64_t K);
void norm_linear_invariant(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                           const Tensor& norm_weight, float eps, Tensor* residual_out,
                           const Tensor& w, Tensor& y, LinearPath path);
// The SwiGLU-fused down projection (ops::swiglu_linear), on `path` as above.
bool swiglu_linear_fits(int64_t M, int64_t N, int64_t K);
void swiglu_linear_invariant(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y,
                             LinearPath path);

// The GEMM kernels' parameters (linear_kernel.cuh) for x [M, K], w [N, K], y [M, N] and a plan,
// the mode-specific fields zero.
struct LinearParams;
LinearParams linear_params(const Tensor& x, const Tensor& w, Tensor& y, const LinearPlan& plan);

SplitBuffers linear_split_workspace(cudaStream_t stream, size_t floats, size_t counters);

// Non-invariant baseline: cuBLASLt with its default heuristic (first result) for this shape.
// Handle, workspace and the chosen algorithm are cached per device and shape.
void linear_cublaslt(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y);

}  // namespace bitexact::ops::cuda::linear_detail
