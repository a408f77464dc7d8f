// ops::cuda::linear against the CPU reference (every path, every element, stated tolerance),
// strided rows, argument checks, and CUDA-graph capture == eager, bitwise.
// The batch-invariance tests (row blocks, cuBLASLt, limited SMs) are in linear_invariance_test.cu.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "linear_test_util.cuh"

namespace bitexact::ops::cuda::linear_test {
namespace {

const LinearPath kAllPaths[] = {LinearPath::kAuto,       LinearPath::kSmallSplit,
                                LinearPath::kSmallFused, LinearPath::kMedium,
                                LinearPath::kLarge,      LinearPath::kSmallWide,
                                LinearPath::kWgmma,      LinearPath::kSmallCluster};

// The cluster fold takes M <= 16 and 2..4 chunks only (it throws otherwise).
bool path_takes(LinearPath path, int64_t M, int64_t N, int64_t K) {
  if (path != LinearPath::kSmallCluster) return true;
  const int S = linear_detail::linear_plan(N, K).S;
  return M <= 16 && S >= 2 && S <= 4;
}

std::vector<float> to_f32(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// (1) Every element of every path against ops::cpu::linear (f32 x, bf16 w, f32 accumulation in
// the CPU's own fixed order). Tolerance per element:
//   |y - ref| <= 2^-8 |ref| + 2^-16 * sum_k |x_k w_k|
// 2^-8 covers y's rounding to bf16 (2^-9 relative) with a factor 2; the second term covers the
// different f32 summation orders of GPU and CPU (each bounded by ~K * 2^-24 * sum|x w|, in
// practice sqrt(K) times smaller). NaN never passes (outputs are poisoned with NaN first).
TEST(LinearCuda, MatchesCpuReferenceOnEveryPath) {
  struct Case { int64_t M, N, K; };
  const Case cases[] = {{1, 1024, 3072}, {5, 2000, 64},    {33, 192, 64},   {64, 1024, 2048},
                        {77, 4096, 1024}, {200, 1024, 3072}, {300, 2048, 512}, {130, 264, 1032},
                        {16, 24, 8},      {129, 136, 4104}, {12, 1000, 2048}, {9, 2040, 4096}};
  uint64_t salt = 1;
  for (const Case& c : cases) {
    auto xh = random_bf16(c.M * c.K, salt++), wh = random_bf16(c.N * c.K, salt++);
    std::vector<float> xf = to_f32(xh), ref(c.M * c.N), sum_abs(c.M * c.N);
    ExecContext cpu_ctx;
    Tensor xt = Tensor::view(xf.data(), DType::kF32, {c.M, c.K});
    Tensor wt = Tensor::view(wh.data(), DType::kBF16, {c.N, c.K});
    Tensor rt = Tensor::view(ref.data(), DType::kF32, {c.M, c.N});
    ops::cpu::linear(cpu_ctx, xt, wt, rt);
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < c.K; ++k)
          s += std::fabs(double(xf[m * c.K + k]) * bf16_to_f32(wh[n * c.K + k]));
        sum_abs[m * c.N + n] = float(s);
      }
    DeviceBuffer xd(xh.size() * 2), wd(wh.size() * 2), yd(c.M * c.N * 2);
    LT_CHECK(cudaMemcpy(xd.ptr, xh.data(), xd.bytes, cudaMemcpyHostToDevice));
    LT_CHECK(cudaMemcpy(wd.ptr, wh.data(), wd.bytes, cudaMemcpyHostToDevice));
    Tensor x = dev_matrix(xd.ptr, c.M, c.K, c.K), w = dev_matrix(wd.ptr, c.N, c.K, c.K);
    Tensor y = dev_matrix(yd.ptr, c.M, c.N, c.N);
    for (LinearPath path : kAllPaths) {
      if (!path_takes(path, c.M, c.N, c.K)) continue;
      LT_CHECK(cudaMemset(yd.ptr, 0xFF, yd.bytes));  // NaN poison
      linear_detail::linear_invariant(ExecContext{Device::kCuda}, x, w, y, path);
      LT_CHECK(cudaDeviceSynchronize());
      std::vector<uint16_t> yh(c.M * c.N);
      LT_CHECK(cudaMemcpy(yh.data(), yd.ptr, yd.bytes, cudaMemcpyDeviceToHost));
      int64_t bad = 0;
      double err2 = 0, ref2 = 0;
      for (int64_t i = 0; i < c.M * c.N; ++i) {
        float v = bf16_to_f32(yh[i]);
        float tol = std::ldexp(std::fabs(ref[i]), -8) + std::ldexp(sum_abs[i], -16);
        if (!(std::fabs(v - ref[i]) <= tol)) {
          if (bad++ < 5)
            ADD_FAILURE() << "M=" << c.M << " N=" << c.N << " K=" << c.K << " path "
                          << linear_detail::linear_path_name(path) << " elem " << i << " got "
                          << v << " ref " << ref[i] << " tol " << tol;
        }
        err2 += double(v - ref[i]) * (v - ref[i]);
        ref2 += double(ref[i]) * ref[i];
      }
      EXPECT_EQ(bad, 0) << "M=" << c.M << " N=" << c.N << " K=" << c.K << " path "
                        << linear_detail::linear_path_name(path);
      EXPECT_LT(std::sqrt(err2 / ref2), 4e-3);  // bf16 output rounding alone is ~1.1e-3
    }
  }
}

// (3) Strided x and y rows give the same bits as contiguous ones on every path.
TEST(LinearCuda, StridedRowsEqualContiguous) {
  struct Case { int64_t M, N, K; };
  for (Case c : {Case{37, 1024, 3072}, Case{300, 4096, 1024}, Case{3, 192, 64}, Case{9, 2048, 4096}}) {
    const int64_t ldx = c.K + 64, ldy = c.N + 136;
    DeviceBuffer xc(c.M * c.K * 2), xs(c.M * ldx * 2), wd(c.N * c.K * 2);
    DeviceBuffer yc(c.M * c.N * 2), ys(c.M * ldy * 2);
    fill_random_device(xs.u16(), c.M * ldx, 11);
    fill_random_device(wd.u16(), c.N * c.K, 12);
    LT_CHECK(cudaMemcpy2D(xc.ptr, c.K * 2, xs.ptr, ldx * 2, c.K * 2, c.M, cudaMemcpyDefault));
    Tensor w = dev_matrix(wd.ptr, c.N, c.K, c.K);
    Tensor x_c = dev_matrix(xc.ptr, c.M, c.K, c.K), x_s = dev_matrix(xs.ptr, c.M, c.K, ldx);
    Tensor y_c = dev_matrix(yc.ptr, c.M, c.N, c.N), y_s = dev_matrix(ys.ptr, c.M, c.N, ldy);
    for (LinearPath path : kAllPaths) {
      if (!path_takes(path, c.M, c.N, c.K)) continue;
      LT_CHECK(cudaMemset(yc.ptr, 0xFF, yc.bytes));
      LT_CHECK(cudaMemset(ys.ptr, 0xFE, ys.bytes));
      linear_detail::linear_invariant(ExecContext{Device::kCuda}, x_c, w, y_c, path);
      linear_detail::linear_invariant(ExecContext{Device::kCuda}, x_s, w, y_s, path);
      DeviceBuffer diff(8);
      LT_CHECK(cudaMemset(diff.ptr, 0, 8));
      count_diff_async(yc.u16(), c.N, ys.u16(), ldy, c.M, c.N,
                       static_cast<unsigned long long*>(diff.ptr));
      unsigned long long n_diff = 1;
      LT_CHECK(cudaMemcpy(&n_diff, diff.ptr, 8, cudaMemcpyDeviceToHost));
      EXPECT_EQ(n_diff, 0u) << "M=" << c.M << " N=" << c.N << " K=" << c.K << " path "
                            << linear_detail::linear_path_name(path);
      // The padding between strided rows must be left untouched (0xFEFE).
      std::vector<uint16_t> row(ldy);
      LT_CHECK(cudaMemcpy(row.data(), ys.ptr, ldy * 2, cudaMemcpyDeviceToHost));
      for (int64_t i = c.N; i < ldy; ++i) ASSERT_EQ(row[i], 0xFEFE) << "wrote past N";
    }
  }
}

TEST(LinearCuda, RejectsBadArguments) {
  DeviceBuffer xd(64 * 80 * 2), wd(64 * 64 * 2), yd(64 * 64 * 2);
  Tensor w = dev_matrix(wd.ptr, 64, 64, 64), y = dev_matrix(yd.ptr, 4, 64, 64);
  ExecContext ctx{Device::kCuda};
  Tensor x_bad_stride = dev_matrix(xd.ptr, 4, 64, 68);  // 136-byte rows: not 16-byte aligned
  EXPECT_THROW(cuda::linear(ctx, x_bad_stride, w, y), Error);
  Tensor x_bad_ptr = dev_matrix(static_cast<char*>(xd.ptr) + 2, 4, 64, 64);
  EXPECT_THROW(cuda::linear(ctx, x_bad_ptr, w, y), Error);
  Tensor x_k12 = dev_matrix(xd.ptr, 4, 12, 16), w_k12 = dev_matrix(wd.ptr, 64, 12, 12);
  EXPECT_THROW(cuda::linear(ctx, x_k12, w_k12, y), Error);  // K not a multiple of 8
  Tensor x_ok = dev_matrix(xd.ptr, 4, 64, 64), y_wrong = dev_matrix(yd.ptr, 4, 56, 56);
  EXPECT_THROW(cuda::linear(ctx, x_ok, w, y_wrong), Error);
}

// (6) A captured CUDA graph replays the same bits as eager calls, for both modes.
TEST(LinearCuda, GraphReplayEqualsEager) {
  cudaStream_t stream;
  LT_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct Case { int64_t M, N, K; };
  for (bool invariant : {true, false})
    for (Case c : {Case{1, 1024, 3072}, Case{5, 4096, 1024}, Case{64, 2048, 6144},
                   Case{300, 1024, 3072}, Case{1000, 6144, 4096}}) {
      DeviceBuffer xd(c.M * c.K * 2), wd(c.N * c.K * 2), ye(c.M * c.N * 2), yg(c.M * c.N * 2);
      fill_random_device(xd.u16(), c.M * c.K, 21);
      fill_random_device(wd.u16(), c.N * c.K, 22);
      LT_CHECK(cudaDeviceSynchronize());
      ExecContext ctx{Device::kCuda, invariant, nullptr, stream};
      Tensor x = dev_matrix(xd.ptr, c.M, c.K, c.K), w = dev_matrix(wd.ptr, c.N, c.K, c.K);
      Tensor y_e = dev_matrix(ye.ptr, c.M, c.N, c.N), y_g = dev_matrix(yg.ptr, c.M, c.N, c.N);
      LT_CHECK(cudaMemsetAsync(ye.ptr, 0xFF, ye.bytes, stream));
      cuda::linear(ctx, x, w, y_e);  // eager, also the warm-up that sizes workspaces
      LT_CHECK(cudaMemsetAsync(yg.ptr, 0xFE, yg.bytes, stream));
      LT_CHECK(cudaStreamSynchronize(stream));
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      LT_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      cuda::linear(ctx, x, w, y_g);
      cuda::linear(ctx, x, w, y_g);  // twice: the split counters must reset between launches
      LT_CHECK(cudaStreamEndCapture(stream, &graph));
      LT_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      for (int rep = 0; rep < 3; ++rep) LT_CHECK(cudaGraphLaunch(exec, stream));
      LT_CHECK(cudaStreamSynchronize(stream));
      DeviceBuffer diff(8);
      LT_CHECK(cudaMemset(diff.ptr, 0, 8));
      count_diff_async(ye.u16(), c.N, yg.u16(), c.N, c.M, c.N,
                       static_cast<unsigned long long*>(diff.ptr));
      unsigned long long n_diff = 1;
      LT_CHECK(cudaMemcpy(&n_diff, diff.ptr, 8, cudaMemcpyDeviceToHost));
      EXPECT_EQ(n_diff, 0u) << (invariant ? "invariant" : "cublasLt") << " M=" << c.M
                            << " N=" << c.N << " K=" << c.K;
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace bitexact::ops::cuda::linear_test
