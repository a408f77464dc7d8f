// ops::cuda::linear: y[M,N] = x[M,K] * w[N,K]^T in bf16 with f32 accumulation. The batch-
// invariant path (linear_kernel.cuh) picks a tile configuration by M for speed while the K order
// comes from linear_plan(N, K) alone; the non-invariant path is cuBLASLt (linear_cublaslt.cu).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/gemm/wgmma_launch.cuh"
#include "ops/cuda/linear_cuda.cuh"
#include "ops/cuda/linear_kernel.cuh"

namespace bitexact::ops::cuda {
namespace linear_detail {
namespace {

// Split K until ~kTargetCtas CTAs of 64 columns exist at decode sizes. A constant of the build,
// never read from the device: v2 tuning on the H100 found 128 (S about half of 264's) best.
constexpr int kTargetCtas = 128;
constexpr int kMinChunk = 256;
// At most kMaxChunks chunks, the cluster fold's limit (beyond it a decode GEMM folds through
// L2), unless that leaves fewer than kMinCtas CTAs. H100, bench_decode batch 1, same binary,
// three runs each: 0.6B (o and down 8 -> 4 chunks) 1.040-1.075 -> 1.019-1.032 ms, 30B-A3B (its
// experts 6 -> 4; the router, 2 column tiles, keeps 8) 3.515-3.529 -> 3.509-3.520, 1.7B
// unchanged; a cap of 4 without the CTA floor made 30B-A3B 1% slower, a cap of 2 everything.
constexpr int kMaxChunks = 4;
constexpr int kMinCtas = 64;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-device scratch of the split path: chunk partials and arrival counters. It only grows, on
// the first call of a larger shape, so steady-state calls (and graph replays) never allocate.
struct SplitWorkspace {
  float* partial = nullptr;
  size_t partial_floats = 0;
  int* counters = nullptr;
  size_t n_counters = 0;
};

std::mutex g_mutex;
std::unordered_map<int, SplitWorkspace> g_workspaces;

SplitWorkspace& workspace_for(cudaStream_t stream, size_t floats, size_t counters) {
  int dev = 0;
  LINEAR_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(g_mutex);
  SplitWorkspace& ws = g_workspaces[dev];
  if (ws.partial_floats >= floats && ws.n_counters >= counters) return ws;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  LINEAR_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail(ErrorKind::kInvalidArgument,
         "linear: the split-K workspace must grow for this shape while a CUDA graph is being "
         "captured; run the shape once before capturing (warm-up)");
  LINEAR_CUDA_CHECK(cudaDeviceSynchronize());  // the old buffers may still be in use
  bump_workspace_epoch();                      // graphs captured with the old ones are stale
  if (ws.partial_floats < floats) {
    LINEAR_CUDA_CHECK(cudaFree(ws.partial));
    ws.partial_floats = std::max(floats, size_t(1) << 20);
    LINEAR_CUDA_CHECK(cudaMalloc(&ws.partial, ws.partial_floats * sizeof(float)));
  }
  if (ws.n_counters < counters) {
    LINEAR_CUDA_CHECK(cudaFree(ws.counters));
    ws.n_counters = std::max(counters, size_t(4096));
    LINEAR_CUDA_CHECK(cudaMalloc(&ws.counters, ws.n_counters * sizeof(int)));
    LINEAR_CUDA_CHECK(cudaMemset(ws.counters, 0, ws.n_counters * sizeof(int)));
  }
  return ws;
}

// Decode GEMMs that make their x (norm_linear, swiglu_linear): at most kResRows rows (decode
// batches of 1..4), and resident rows of at most 48 KB (norm: K <= 4096, 32 KB; SwiGLU: the
// CTA's chunk, 8B's down projection 48 KB), so that two CTAs of <= 116 KB still fit on an SM, as
// the plain small tiles' 84 KB do.
constexpr int kResRows = kNormLinearMaxRows;
constexpr int kMaxNormK = 4096;
constexpr int kMaxResidentBytes = 48 * 1024;
constexpr int kMaxResidentSmem = kMaxResidentBytes + 4 * 64 * 128 * 2 + 16 * 64 * 4;

template <int BM, int BN, int BK, int WM, int WN, int STAGES, bool SPLIT, bool CLUSTER = false,
          int RES_ROWS = 0, int NORM_THREADS = 0, int NORM_GROUPS = 0>
void launch(LinearParams p, cudaStream_t stream) {
  // The norm-fused kernels' resident rows depend on K: opt in to the most shared memory once.
  const int smem = RES_ROWS == 0
                       ? linear_smem_bytes<BM, BN, BK, STAGES, SPLIT>()
                       : linear_resident_smem_bytes<BM, BN, BK, STAGES, SPLIT>(RES_ROWS, p.K, p.kc);
  auto kernel =
      linear_bf16_kernel<BM, BN, BK, WM, WN, STAGES, SPLIT, CLUSTER, RES_ROWS, NORM_THREADS, NORM_GROUPS>;
  static std::atomic<uint64_t> attr_set{0};
  allow_dynamic_smem(kernel, RES_ROWS == 0 ? smem : kMaxResidentSmem, attr_set);
  const int64_t m_tiles = ceil_div(p.M, BM), n_tiles = ceil_div(p.N, BN);
  // Raster groups of M-tiles whose x rows (group_m * BM * K bf16) stay around 16 MB, so the CTAs
  // in flight share each weight tile through L2. Speed only: no tile's arithmetic depends on it.
  p.group_m = int(std::clamp<int64_t>((int64_t(16) << 20) / (int64_t(BM) * p.K * 2), 1, m_tiles));
  // The grid is a function of (M, N, K, path): fewer SMs only serialise more CTAs, each CTA's
  // arithmetic is unchanged.
  dim3 grid = SPLIT ? dim3(unsigned(n_tiles), unsigned(p.S), unsigned(m_tiles))
                    : dim3(unsigned(m_tiles * n_tiles), 1u, 1u);
  if constexpr (CLUSTER) {
    // The S chunks of an output tile as one cluster (1, S, 1), launched with PDL too.
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = unsigned(p.S);
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = dim3(WM * WN * 32);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attr;
    config.numAttrs = pdl_enabled() ? 2 : 1;
    LINEAR_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, p));
    return;
  }
  LINEAR_CUDA_CHECK(launch_pdl(kernel, grid, dim3(WM * WN * 32), smem, stream, p));
}

// The cluster fold (linear_bf16_kernel CLUSTER) for M <= 16: the S - 1 parked partials of 4 KB
// fit in the pipeline stages' 80 KB. Up to 4 chunks: H100, same-binary A/B (bench_decode
// --no-cluster-fold, batch 1): 30B-A3B (S = 2, 4 and 8 on its router) 3.61 -> 3.52 ms, 8B (S = 2)
// 6.07-6.14 -> 6.04-6.08, but 0.6B (o and down at S = 8: 16 clusters of 8) 1.10 -> 1.15-1.21.
constexpr int kMaxClusterChunks = 4;
bool g_cluster_fold = true;

static_assert(kMaxChunks <= kMaxClusterChunks, "the plan's chunks fit the cluster fold");

bool cluster_fold_fits(int64_t M, int S) { return M <= 16 && S > 1 && S <= kMaxClusterChunks; }

// How a decode-size GEMM of S chunks runs on the 16-row small tile: one CTA per chunk (split) or
// one per output tile (fused), and a split's fold in a cluster over DSMEM or through L2. `path`
// is resolved (kSmallFused, kSmallSplit or kSmallCluster); when kAuto chose it, split chunks fold
// in a cluster where they fit (a forced kSmallSplit keeps the L2 fold). The one rule for linear,
// norm_linear and swiglu_linear.
struct SmallPath {
  bool split = false, cluster = false;
};
SmallPath small_path(int64_t M, int S, LinearPath path, bool auto_path, const char* op) {
  if (path == LinearPath::kSmallCluster && !cluster_fold_fits(M, S))
    fail(ErrorKind::kInvalidArgument, std::string(op) + ": the cluster path takes M <= 16 and 2..4 chunks");
  SmallPath r;
  r.split = path != LinearPath::kSmallFused && S > 1;
  r.cluster = path == LinearPath::kSmallCluster || (r.split && auto_path && g_cluster_fold && cluster_fold_fits(M, S));
  return r;
}

// Decode-size tiles: BN columns of weights per CTA, one K chunk per CTA when split.
template <int BM, int BN, int BK, int WM, int WN, int STAGES, int RES_ROWS = 0, int NORM_THREADS = 0,
          int NORM_GROUPS = 0>
void launch_small(LinearParams& p, bool split, cudaStream_t stream, bool cluster = false) {
  if constexpr (BM == 16 && BN == 64 && WM == 1 && WN == 4) {
    if (split && cluster)
      return launch<BM, BN, BK, WM, WN, STAGES, true, true, RES_ROWS, NORM_THREADS, NORM_GROUPS>(p, stream);
  }
  if (split) {
    size_t n_counters = size_t(ceil_div(p.M, BM) * ceil_div(p.N, BN));
    SplitWorkspace& ws = workspace_for(stream, size_t(p.S) * p.M * p.N, n_counters);
    p.partial = ws.partial;
    p.counters = ws.counters;
    launch<BM, BN, BK, WM, WN, STAGES, true, false, RES_ROWS, NORM_THREADS, NORM_GROUPS>(p, stream);
  } else {
    launch<BM, BN, BK, WM, WN, STAGES, false, false, RES_ROWS, NORM_THREADS, NORM_GROUPS>(p, stream);
  }
}

}  // namespace

void set_linear_cluster_fold(bool on) { g_cluster_fold = on; }

SplitBuffers linear_split_workspace(cudaStream_t stream, size_t floats, size_t counters) {
  SplitWorkspace& ws = workspace_for(stream, floats, counters);
  return {ws.partial, ws.counters};
}

LinearPlan linear_plan(int64_t N, int64_t K) {
  // Split K only as far as needed to give ~kTargetCtas CTAs of 64 columns at decode sizes, into
  // at most kMaxChunks chunks where kMinCtas CTAs remain, and never into chunks shorter than
  // kMinChunk. N and K are the model's, so the plan is fixed per
  // weight matrix: every batch size folds the same chunks in the same order.
  int64_t k_padded = ceil_div(K, kChunkAlign) * kChunkAlign;
  int64_t n_tiles = ceil_div(N, 64);
  int64_t s_target = std::max<int64_t>(1, ceil_div(kTargetCtas, n_tiles));
  s_target = std::min<int64_t>(s_target, std::max<int64_t>(kMaxChunks, ceil_div(kMinCtas, n_tiles)));
  int64_t kc = ceil_div(ceil_div(K, s_target), kChunkAlign) * kChunkAlign;
  kc = std::min(k_padded, std::max<int64_t>(kc, kMinChunk));
  LinearPlan plan;
  plan.kc = int(kc);
  plan.S = int(ceil_div(K, kc));
  return plan;
}

const char* linear_path_name(LinearPath path) {
  switch (path) {
    case LinearPath::kAuto: return "auto";
    case LinearPath::kSmallSplit: return "small_split";
    case LinearPath::kSmallFused: return "small_fused";
    case LinearPath::kSmallCluster: return "small_cluster";
    case LinearPath::kMedium: return "medium";
    case LinearPath::kLarge: return "large";
    case LinearPath::kSmallWide: return "small_wide";
    case LinearPath::kWgmma: return "wgmma";
  }
  return "?";
}

LinearPath linear_auto_path(int64_t M, int64_t N, int64_t K) {
  // Speed only: every choice below folds the same chunks in the same order (the tests compare
  // every path at every size). Thresholds fitted to bench_gemm --paths on the H100
  // (docs/notes/gemm.md, v3).
  const LinearPlan plan = linear_plan(N, K);
  // Hopper wgmma + TMA tiles: 2-3x the mma.sync tiles' throughput once the tensor cores bind
  // (M >= 128), and ahead from M = 32 when N gives >= 32 column tiles of 128, or from M = 64 for
  // N >= 2048 with short K (split-K mma.sync still wins at long K there). H100, gemm.md v4.
  if (M >= 128 || (M >= 32 && N >= 4096) || (M >= 64 && N >= 2048 && K <= 2048))
    return LinearPath::kWgmma;
  // v5: split-K wgmma items (wgmma_auto_tile picks them) for few output tiles and S > 1, from
  // M = 32: ahead of small_split on every narrow weight measured (gemm.md v5).
  if (wgmma_split_pays(M, N, K, plan.S)) return LinearPath::kWgmma;
  const int64_t n64 = ceil_div(N, 64);
  const int64_t large_ctas = ceil_div(M, 128) * ceil_div(N, 128);
  const int64_t medium_ctas = ceil_div(M, 64) * ceil_div(N, 128);
  if (M > 512 || (M >= 64 && medium_ctas >= 132))
    return M >= 128 && large_ctas >= 264 ? LinearPath::kLarge : LinearPath::kMedium;
  if (plan.S == 1) return LinearPath::kSmallFused;
  const int64_t bm = M <= 16 ? 16 : M <= 32 ? 32 : 64;
  const int64_t fused_ctas = n64 * ceil_div(M, bm);
  // Enough CTAs without splitting: skip the partials' round trip through L2.
  if (M <= 16) return fused_ctas >= 96 ? LinearPath::kSmallFused : LinearPath::kSmallSplit;
  if (K <= 2048 && fused_ctas >= 96 && (M <= 64 || fused_ctas >= 128))
    return LinearPath::kSmallFused;
  if (M >= 512) return LinearPath::kSmallFused;
  // Narrow weights at 256 <= M: 128-column tiles halve the re-reads of x.
  if (M >= 256) return LinearPath::kSmallWide;
  return LinearPath::kSmallSplit;
}

void check_linear_args(const Tensor& x, const Tensor& w, const Tensor& y) {
  auto bad = [](const std::string& what) {
    fail(ErrorKind::kInvalidArgument, "linear (cuda): " + what);
  };
  if (x.dtype != DType::kBF16 || w.dtype != DType::kBF16 || y.dtype != DType::kBF16)
    bad("x, w and y must be bf16");
  if (x.device != Device::kCuda || w.device != Device::kCuda || y.device != Device::kCuda)
    bad("x, w and y must be on the cuda device");
  if (x.ndim != 2 || w.ndim != 2 || y.ndim != 2) bad("x, w, y must be rank 2");
  const int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  if (w.dim(1) != K || y.dim(0) != M || y.dim(1) != N)
    bad("shapes x" + x.shape_str() + " w" + w.shape_str() + " y" + y.shape_str());
  if (K % 8 != 0 || N % 8 != 0) bad("N and K must be multiples of 8, got N=" +
                                    std::to_string(N) + " K=" + std::to_string(K));
  if (!w.is_contiguous()) bad("w must be contiguous");
  if (x.stride[1] != 1 || y.stride[1] != 1) bad("the last dimension of x and y must be contiguous");
  if ((M > 1 && x.stride[0] < K) || (M > 1 && y.stride[0] < N)) bad("row strides overlap");
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!aligned(x.data) || !aligned(w.data) || !aligned(y.data))
    bad("x, w and y must start at 16-byte aligned addresses");
  if (x.stride[0] % 8 != 0 || y.stride[0] % 8 != 0)
    bad("row strides of x and y must be multiples of 8 elements (16 bytes)");
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) bad("dimension too large");
}

// The GEMM's parameters for x [M, K], w [N, K], y [M, N] (checked by check_linear_args) and
// the (N, K) plan; the mode-specific fields stay zero.
LinearParams linear_params(const Tensor& x, const Tensor& w, Tensor& y, const LinearPlan& plan) {
  LinearParams p{};
  p.x = static_cast<const __nv_bfloat16*>(x.data);
  p.w = static_cast<const __nv_bfloat16*>(w.data);
  p.y = static_cast<__nv_bfloat16*>(y.data);
  p.ldx = x.stride[0];
  p.ldy = y.stride[0];
  p.M = int(x.dim(0));
  p.N = int(w.dim(0));
  p.K = int(x.dim(1));
  p.kc = plan.kc;
  p.S = plan.S;
  return p;
}

void linear_invariant(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y,
                      LinearPath path, int64_t plan_rows) {
  check_linear_args(x, w, y);
  const int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  if (M == 0 || N == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  if (K == 0) {  // an empty sum is +0 for every element
    LINEAR_CUDA_CHECK(cudaMemset2DAsync(y.data, y.stride[0] * 2, 0, N * 2, M, stream));
    return;
  }
  // A column shard of a larger weight cuts K like the whole weight: TP degree changes N only.
  const LinearPlan plan = linear_plan(plan_rows > 0 ? plan_rows : N, K);
  LinearParams p = linear_params(x, w, y, plan);
  const bool auto_path = path == LinearPath::kAuto;
  if (auto_path) path = linear_auto_path(M, N, K);
  switch (path) {
    case LinearPath::kSmallCluster:
    case LinearPath::kSmallSplit:
    case LinearPath::kSmallFused: {
      // M <= 16 streams 256-byte row segments per stage (BK 128): measured 2-6% faster at
      // decode than BK 64 (docs/notes/gemm.md, v2 tuning). The cluster fold is M <= 16 only
      // (small_path refuses it above).
      if (M <= 16 || path == LinearPath::kSmallCluster) {
        const SmallPath sp = small_path(M, plan.S, path, auto_path, "linear");
        launch_small<16, 64, 128, 1, 4, 4>(p, sp.split, stream, sp.cluster);
        break;
      }
      const bool split = path == LinearPath::kSmallSplit && plan.S > 1;
      if (M <= 32) launch_small<32, 64, 64, 2, 2, 4>(p, split, stream);
      else launch_small<64, 64, 64, 2, 2, 4>(p, split, stream);
      break;
    }
    case LinearPath::kSmallWide: {
      if (M <= 32) launch_small<32, 128, 64, 2, 4, 4>(p, plan.S > 1, stream);
      else launch_small<64, 128, 64, 2, 4, 4>(p, plan.S > 1, stream);
      break;
    }
    case LinearPath::kMedium: launch<64, 128, 64, 2, 2, 3, false>(p, stream); break;
    case LinearPath::kLarge: launch<128, 128, 64, 2, 4, 4, false>(p, stream); break;
    case LinearPath::kWgmma: launch_wgmma(p, stream); break;
    case LinearPath::kAuto: break;
  }
}

// The small-tile path a resident-x kernel takes: linear_invariant's (small_path) for kAuto, or
// the forced one (tests); only the small paths have resident-x kernels.
SmallPath resident_path(int64_t M, int64_t N, int64_t K, int S, LinearPath path, const char* op) {
  const bool auto_path = path == LinearPath::kAuto;
  if (auto_path) path = linear_auto_path(M, N, K);
  if (path != LinearPath::kSmallFused && path != LinearPath::kSmallSplit && path != LinearPath::kSmallCluster)
    fail(ErrorKind::kInvalidArgument,
         std::string(op) + ": no resident-x kernel on the " + linear_path_name(path) + " path");
  return small_path(M, S, path, auto_path, op);
}

// The (threads, groups) of norm.cu's tree for K that the fused kernel is built for: K = 8 threads
// groups exactly (Qwen3 0.6B, 1.7B / 30B-A3B and 8B hidden sizes; Llama 8B's 4096).
bool norm_linear_fits(int64_t M, int64_t K) {
  return M >= 1 && M <= kResRows && (K == 1024 || K == 2048 || K == 4096);
}

void norm_linear_invariant(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                           const Tensor& norm_weight, float eps, Tensor* residual_out,
                           const Tensor& w, Tensor& y, LinearPath path) {
  auto bad = [](const std::string& what) { fail(ErrorKind::kInvalidArgument, "norm_linear (cuda): " + what); };
  check_linear_args(residual, w, y);
  const int64_t M = residual.dim(0), K = residual.dim(1), N = w.dim(0);
  if (!norm_linear_fits(M, K)) bad("takes 1..4 rows and K = 1024, 2048 or 4096");
  if (norm_weight.dtype != DType::kBF16 || norm_weight.device != Device::kCuda ||
      !norm_weight.is_contiguous() || norm_weight.numel() != K ||
      reinterpret_cast<uintptr_t>(norm_weight.data) % 16 != 0)
    bad("the norm weight must be a contiguous, 16-byte aligned bf16 [K] on the device");
  if ((x == nullptr) != (residual_out == nullptr)) bad("x and residual_out come together");
  for (const Tensor* t : {x, static_cast<const Tensor*>(residual_out)}) {
    if (t == nullptr) continue;
    check_linear_args(*t, w, y);  // the same [M, K] bf16 row layout rules as residual
    if (t->dim(0) != M || t->dim(1) != K) bad("x and residual_out must be [M, K] like residual");
  }
  if (residual_out != nullptr && (residual_out->data == residual.data || residual_out->data == x->data))
    bad("residual_out must not alias residual or x (other CTAs read them)");
  const LinearPlan plan = linear_plan(N, K);
  LinearParams p = linear_params(residual, w, y, plan);  // p.x is not read: the norm makes x
  p.norm.residual = static_cast<const __nv_bfloat16*>(residual.data);
  p.norm.ldr = residual.stride[0];
  if (x != nullptr) {
    p.norm.x = static_cast<const __nv_bfloat16*>(x->data);
    p.norm.ldx = x->stride[0];
    p.norm.residual_out = static_cast<__nv_bfloat16*>(residual_out->data);
    p.norm.ldo = residual_out->stride[0];
  }
  p.norm.weight = static_cast<const __nv_bfloat16*>(norm_weight.data);
  p.norm.eps = eps;
  const SmallPath rp = resident_path(M, N, K, plan.S, path, "norm_linear");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  static_assert(kMaxNormK == 4096, "the instantiations below");
  switch (K) {  // (threads, groups): norm_row::threads_for(K) and K / 8 / threads
    case 1024: launch_small<16, 64, 128, 1, 4, 4, kResRows, 128, 1>(p, rp.split, stream, rp.cluster); break;
    case 2048: launch_small<16, 64, 128, 1, 4, 4, kResRows, 128, 2>(p, rp.split, stream, rp.cluster); break;
    default: launch_small<16, 64, 128, 1, 4, 4, kResRows, 256, 2>(p, rp.split, stream, rp.cluster); break;
  }
}

// The down projection with its SwiGLU: K % 128 == 0 and at most kMaxSwigluElems of x per CTA
// (the chunk when split, all of K when fused), 16 per thread. Every CTA of a column tile repeats
// its chunk's SwiGLU (an expf and a division per element) on the critical path: H100, batch 1,
// 8B's down projection (6144 per CTA) made the step 1-2% slower, 0.6B's (384 then; 768 since
// kMaxChunks) did not.
constexpr int64_t kMaxSwigluElems = 2048;
bool swiglu_linear_fits(int64_t M, int64_t N, int64_t K) {
  if (M < 1 || M > kResRows || K % 128 != 0 || K > INT32_MAX / 2) return false;
  const LinearPlan plan = linear_plan(N, K);
  const bool split = resident_path(M, N, K, plan.S, LinearPath::kAuto, "swiglu_linear").split;
  return M * (split ? plan.kc : K) <= kMaxSwigluElems;
}

void swiglu_linear_invariant(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y,
                             LinearPath path) {
  auto bad = [](const std::string& what) { fail(ErrorKind::kInvalidArgument, "swiglu_linear (cuda): " + what); };
  if (gate_up.ndim != 2 || gate_up.dim(1) % 2 != 0) bad("gate_up must be [M, 2K]");
  const int64_t M = gate_up.dim(0), K = gate_up.dim(1) / 2, N = w.dim(0);
  Tensor gate = gate_up;  // the linear argument rules for the [M, K] gate half
  gate.shape[1] = K;
  check_linear_args(gate, w, y);
  if (M < 1 || M > kResRows || K % 128 != 0) bad("takes 1..4 rows and K % 128 == 0");
  const LinearPlan plan = linear_plan(N, K);
  const SmallPath rp = resident_path(M, N, K, plan.S, path, "swiglu_linear");
  if (int64_t(kResRows) * (rp.split ? plan.kc : K) * 2 > kMaxResidentBytes) bad("too many resident rows on this path");
  LinearParams p = linear_params(gate, w, y, plan);  // the kernel reads gate and up from p.x
  launch_small<16, 64, 128, 1, 4, 4, kResRows>(p, rp.split, static_cast<cudaStream_t>(ctx.stream), rp.cluster);
}

}  // namespace linear_detail

namespace {
bool g_norm_fusion = true, g_swiglu_fusion = true;
}

void set_norm_linear_fusion(bool on) { g_norm_fusion = on; }
void set_swiglu_linear_fusion(bool on) { g_swiglu_fusion = on; }

bool norm_linear_fuses(const ExecContext& ctx, int64_t M, int64_t K) {
  return ctx.batch_invariant && g_norm_fusion && linear_detail::norm_linear_fits(M, K);
}

void norm_linear(const ExecContext& ctx, const Tensor& residual, const Tensor* x,
                 const Tensor& norm_weight, float eps, Tensor* residual_out, const Tensor& w, Tensor& y) {
  linear_detail::norm_linear_invariant(ctx, residual, x, norm_weight, eps, residual_out, w, y,
                                       linear_detail::LinearPath::kAuto);
}

bool swiglu_linear_fuses(const ExecContext& ctx, int64_t M, int64_t N, int64_t K) {
  return ctx.batch_invariant && g_swiglu_fusion && linear_detail::swiglu_linear_fits(M, N, K);
}

void swiglu_linear(const ExecContext& ctx, const Tensor& gate_up, const Tensor& w, Tensor& y) {
  linear_detail::swiglu_linear_invariant(ctx, gate_up, w, y, linear_detail::LinearPath::kAuto);
}

void linear(const ExecContext& ctx, const Tensor& x, const Tensor& w, Tensor& y, int64_t plan_rows) {
  if (ctx.batch_invariant)
    linear_detail::linear_invariant(ctx, x, w, y, linear_detail::LinearPath::kAuto, plan_rows);
  else
    linear_detail::linear_cublaslt(ctx, x, w, y);
}

}  // namespace bitexact::ops::cuda
