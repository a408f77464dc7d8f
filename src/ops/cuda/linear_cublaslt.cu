// The non-invariant baseline of ops::cuda::linear: cuBLASLt with its default heuristic. Its
// choice of kernel and split-K depends on M, which is exactly what the invariance tests must be
// able to detect and what bench_gemm measures our kernels against.
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "ops/cuda/linear_cuda.cuh"

namespace bitexact::ops::cuda::linear_detail {
namespace {

#define LINEAR_CUBLAS_CHECK(expr)                                                         \
  do {                                                                                    \
    cublasStatus_t linear_st_ = (expr);                                                   \
    if (linear_st_ != CUBLAS_STATUS_SUCCESS)                                              \
      ::bitexact::fail(::bitexact::ErrorKind::kInternal,                                  \
                       std::string("linear (cublasLt): ") + #expr + " failed with status " + \
                           std::to_string(int(linear_st_)));                              \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

// One matmul description per (M, N, K, ldx, ldy): built and its algorithm chosen on the first
// call, so later calls (and graph captures) only enqueue the matmul.
struct LtShape {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>, LtShape> shapes;
};

std::mutex g_mutex;
std::map<int, LtDevice> g_devices;

LtShape build_shape(LtDevice& d, int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy) {
  // Row-major y[M,N] = x[M,K] w[N,K]^T is column-major y^T[N,M] = (w^T)^T[N,K] x^T[K,M]:
  // A = w seen as column-major [K,N] (ld K), transposed; B = x as column-major [K,M] (ld ldx).
  LtShape s;
  LINEAR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&s.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LINEAR_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LINEAR_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  LINEAR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.a, CUDA_R_16BF, K, N, K));
  LINEAR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.b, CUDA_R_16BF, K, M, ldx));
  LINEAR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&s.c, CUDA_R_16BF, N, M, ldy));
  cublasLtMatmulPreference_t pref = nullptr;
  LINEAR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = kWorkspaceBytes;
  LINEAR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  LINEAR_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(d.handle, s.desc, s.a, s.b, s.c, s.c, pref,
                                                     1, &result, &found));
  cublasLtMatmulPreferenceDestroy(pref);
  if (found == 0)
    fail(ErrorKind::kUnsupported, "linear (cublasLt): no algorithm for M=" + std::to_string(M) +
                                      " N=" + std::to_string(N) + " K=" + std::to_string(K));
  s.algo = result.algo;
  return s;
}

}  // namespace

void linear_cublaslt(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y) {
  check_linear_args(x, w, y);
  const int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  if (M == 0 || N == 0 || K == 0) return linear_invariant(ctx, x, w, y);  // empty: zeros
  int dev = 0;
  LINEAR_CUDA_CHECK(cudaGetDevice(&dev));
  LtShape shape;
  LtDevice* d = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    d = &g_devices[dev];
    if (d->handle == nullptr) {
      LINEAR_CUBLAS_CHECK(cublasLtCreate(&d->handle));
      LINEAR_CUDA_CHECK(cudaMalloc(&d->workspace, kWorkspaceBytes));
    }
    auto key = std::make_tuple(M, N, K, x.stride[0], y.stride[0]);
    auto it = d->shapes.find(key);
    if (it == d->shapes.end())
      it = d->shapes.emplace(key, build_shape(*d, M, N, K, x.stride[0], y.stride[0])).first;
    shape = it->second;
  }
  const float alpha = 1.f, beta = 0.f;
  LINEAR_CUBLAS_CHECK(cublasLtMatmul(d->handle, shape.desc, &alpha, w.data, shape.a, x.data,
                                     shape.b, &beta, y.data, shape.c, y.data, shape.c,
                                     &shape.algo, d->workspace, kWorkspaceBytes,
                                     static_cast<cudaStream_t>(ctx.stream)));
}

}  // namespace bitexact::ops::cuda::linear_detail
