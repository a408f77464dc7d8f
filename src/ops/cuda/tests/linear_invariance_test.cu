// Batch invariance of ops::cuda::linear, bit for bit: row block [:m] of an M-row product equals
// the m-row product for every shape, m and code path; cuBLASLt (non-invariant mode) is shown to
// fail the same test; and results do not change when most SMs are taken by another kernel.
#include <algorithm>

#include "linear_test_util.cuh"

namespace bitexact::ops::cuda::linear_test {
namespace {

constexpr int64_t kFullM = 4096;

std::vector<int64_t> sweep_ms() {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 256; ++m) ms.push_back(m);
  for (int64_t m : {257, 320, 383, 511, 512, 513, 640, 1000, 1024, 1500, 2047, 2048, 3000, 4095})
    ms.push_back(m);
  return ms;
}

// Sizes at which every forced path is compared as well (auto is compared at every m).
bool all_paths_at(int64_t m) {
  for (int64_t s : {1, 2, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 200, 256, 1000, 4095})
    if (m == s) return true;
  return false;
}

struct Fixture {
  Shape shape;
  DeviceBuffer x, w, y_full, y;
  Fixture(const Shape& s, uint64_t salt)
      : shape(s), x(kFullM * s.K * 2), w(s.N * s.K * 2), y_full(kFullM * s.N * 2),
        y(kFullM * s.N * 2) {
    fill_random_device(x.u16(), kFullM * s.K, salt * 2);
    fill_random_device(w.u16(), s.N * s.K, salt * 2 + 1);
  }
  Tensor xt(int64_t m) const { return dev_matrix(x.ptr, m, shape.K, shape.K); }
  Tensor wt() const { return dev_matrix(w.ptr, shape.N, shape.K, shape.K); }
  Tensor yt(const DeviceBuffer& b, int64_t m) const { return dev_matrix(b.ptr, m, shape.N, shape.N); }
};

// (2) The contract itself, for every shape the engine runs, every m in 1..256 plus a sweep to
// 4096, and every code path at selected m (the reference is the large-tile path at M=4096, so
// every path is compared against another path).
TEST(LinearInvariance, RowBlocksEqualSmallerProductsOnEveryPath) {
  const std::vector<int64_t> ms = sweep_ms();
  const LinearPath forced[] = {LinearPath::kSmallSplit, LinearPath::kSmallFused,
                               LinearPath::kMedium, LinearPath::kLarge, LinearPath::kSmallWide,
                               LinearPath::kWgmma};
  uint64_t salt = 100;
  for (const Shape& s : all_shapes()) {
    Fixture f(s, salt++);
    ExecContext ctx{Device::kCuda};
    Tensor y_full = f.yt(f.y_full, kFullM);
    LT_CHECK(cudaMemset(f.y_full.ptr, 0xFF, f.y_full.bytes));
    linear_detail::linear_invariant(ctx, f.xt(kFullM), f.wt(), y_full, LinearPath::kLarge);
    std::vector<std::pair<std::string, int64_t>> labels;
    DeviceBuffer counts(8 * 2048);
    LT_CHECK(cudaMemset(counts.ptr, 0, counts.bytes));
    auto* cnt = static_cast<unsigned long long*>(counts.ptr);
    auto check = [&](int64_t m, LinearPath path) {
      ASSERT_LT(labels.size(), 2048u);
      LT_CHECK(cudaMemsetAsync(f.y.ptr, 0xFE, m * s.N * 2));
      Tensor y = f.yt(f.y, m);
      linear_detail::linear_invariant(ctx, f.xt(m), f.wt(), y, path);
      count_diff_async(f.y_full.u16(), s.N, f.y.u16(), s.N, m, s.N, cnt + labels.size());
      labels.emplace_back(linear_detail::linear_path_name(path), m);
    };
    check(kFullM, LinearPath::kMedium);  // the other large-M paths at full size
    check(kFullM, LinearPath::kWgmma);
    const int S = linear_detail::linear_plan(s.N, s.K).S;
    for (int64_t m : ms) {
      check(m, LinearPath::kAuto);  // at m <= 16 with 2..4 chunks: the cluster fold
      if (all_paths_at(m))
        for (LinearPath p : forced) check(m, p);
      if (m <= 16 && S >= 2 && S <= 4) check(m, LinearPath::kSmallCluster);
    }
    LT_CHECK(cudaDeviceSynchronize());
    std::vector<unsigned long long> host(labels.size());
    LT_CHECK(cudaMemcpy(host.data(), counts.ptr, host.size() * 8, cudaMemcpyDeviceToHost));
    int failures = 0;
    for (size_t i = 0; i < host.size(); ++i)
      if (host[i] != 0 && failures++ < 10)
        ADD_FAILURE() << s.name << " (" << s.N << "x" << s.K << ") m=" << labels[i].second
                      << " path " << labels[i].first << ": " << host[i] << " elements differ";
    EXPECT_EQ(failures, 0) << s.name;
    std::printf("%-14s N=%-6lld K=%-5lld kc=%-5d S=%-3d checks=%zu mismatching=%d\n", s.name,
                (long long)s.N, (long long)s.K, linear_detail::linear_plan(s.N, s.K).kc,
                linear_detail::linear_plan(s.N, s.K).S, labels.size(), failures);
  }
}

// (4) The same test in non-invariant mode (cuBLASLt default heuristics) must find differences
// for some shapes: proof that the bitwise test can fail. GPU.md: cuBLAS splits K at small M for
// the down and o projections.
TEST(LinearInvariance, CublasLtModeIsNotInvariant) {
  const char* names[] = {"0.6B down", "0.6B o", "8B o", "8B down", "1.7B down", "30B-A3B o"};
  unsigned long long total_shapes_differing = 0;
  uint64_t salt = 300;
  for (const Shape& s : all_shapes()) {
    if (std::none_of(std::begin(names), std::end(names),
                     [&](const char* n) { return std::string(n) == s.name; }))
      continue;
    Fixture f(s, salt++);
    ExecContext ctx{Device::kCuda, /*batch_invariant=*/false};
    Tensor y_full = f.yt(f.y_full, kFullM);
    cuda::linear(ctx, f.xt(kFullM), f.wt(), y_full);
    DeviceBuffer counts(8 * 16);
    LT_CHECK(cudaMemset(counts.ptr, 0, counts.bytes));
    const int64_t ms[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    for (int i = 0; i < 9; ++i) {
      Tensor y = f.yt(f.y, ms[i]);
      cuda::linear(ctx, f.xt(ms[i]), f.wt(), y);
      count_diff_async(f.y_full.u16(), s.N, f.y.u16(), s.N, ms[i], s.N,
                       static_cast<unsigned long long*>(counts.ptr) + i);
    }
    unsigned long long host[16];
    LT_CHECK(cudaMemcpy(host, counts.ptr, sizeof(host), cudaMemcpyDeviceToHost));
    bool differs = false;
    std::printf("cublasLt %-10s differing elements at m=1..256:", s.name);
    for (int i = 0; i < 9; ++i) {
      std::printf(" %llu", host[i]);
      differs |= host[i] != 0;
    }
    std::printf("\n");
    total_shapes_differing += differs;
  }
  EXPECT_GT(total_shapes_differing, 0u) << "the bitwise test found no difference in cuBLASLt";
}

// Occupies every SM but `free_sms` with one CTA of ~200 KB shared memory each, spinning for
// `cycles`, so that kernels launched meanwhile on another stream run on the few SMs left.
__global__ void linear_test_hog(long long cycles) {
  extern __shared__ char hog_smem[];
  long long start = clock64();
  while (clock64() - start < cycles) hog_smem[threadIdx.x] = char(threadIdx.x);
}

// (5) I11: the result does not depend on how many SMs run the kernel. The grid is a pure
// function of (M, N, K, path) (linear.cu never reads the SM count), and each CTA's arithmetic is
// independent of where and when it runs; this test runs the paths squeezed onto 4 SMs.
TEST(LinearInvariance, FewerSmsGiveEqualBits) {
  int sms = 0;
  LT_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int hog_smem = 200 * 1024, free_sms = 4;
  LT_CHECK(cudaFuncSetAttribute(linear_test_hog, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                hog_smem));
  cudaStream_t hog_stream, stream;
  LT_CHECK(cudaStreamCreateWithFlags(&hog_stream, cudaStreamNonBlocking));
  LT_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const Shape shapes[] = {{"0.6B down", 1024, 3072}, {"8B qkv", 6144, 4096}};
  for (const Shape& s : shapes) {
    Fixture f(s, 500);
    LT_CHECK(cudaDeviceSynchronize());
    ExecContext ctx{Device::kCuda, true, nullptr, stream};
    for (int64_t m : {1, 64, 300, 2048}) {
      Tensor y_full = f.yt(f.y_full, m), y = f.yt(f.y, m);
      linear_detail::linear_invariant(ctx, f.xt(m), f.wt(), y_full);  // all SMs
      LT_CHECK(cudaStreamSynchronize(stream));
      LT_CHECK(cudaMemsetAsync(f.y.ptr, 0xFE, m * s.N * 2, stream));
      LT_CHECK(cudaStreamSynchronize(stream));
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      linear_test_hog<<<sms - free_sms, 256, hog_smem, hog_stream>>>(200'000'000);  // ~100 ms
      LT_CHECK(cudaGetLastError());
      cudaEventRecord(e0, stream);
      linear_detail::linear_invariant(ctx, f.xt(m), f.wt(), y);  // squeezed onto free SMs
      cudaEventRecord(e1, stream);
      LT_CHECK(cudaDeviceSynchronize());
      float ms_taken = 0;
      cudaEventElapsedTime(&ms_taken, e0, e1);
      DeviceBuffer diff(8);
      LT_CHECK(cudaMemset(diff.ptr, 0, 8));
      count_diff_async(f.y_full.u16(), s.N, f.y.u16(), s.N, m, s.N,
                       static_cast<unsigned long long*>(diff.ptr));
      unsigned long long n_diff = 1;
      LT_CHECK(cudaMemcpy(&n_diff, diff.ptr, 8, cudaMemcpyDeviceToHost));
      std::printf("%s m=%lld on %d free SMs: %.3f ms, %llu differing\n", s.name, (long long)m,
                  free_sms, ms_taken, n_diff);
      EXPECT_EQ(n_diff, 0u) << s.name << " m=" << m;
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
    }
  }
  cudaStreamDestroy(hog_stream);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace bitexact::ops::cuda::linear_test
