// CUDA sum_partials against a host fold of the same bf16 partials (left to right in f32, one
// rounding to bf16), bit for bit, with strided output rows.
#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

TEST(CudaSumPartials, EqualsHostFold) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sum_partials"));
  for (int64_t P : {1, 2, 8}) {
    const int64_t M = 37, N = 1024, ld = 1536;
    auto p = random_floats(rng, size_t(P * M * N), -4, 4);
    round_bf16(p);
    auto gp = upload(p, DType::kBF16, {P, M, N});
    auto gout = device_empty(DType::kBF16, {M, ld});
    poison(gout.t);
    Tensor out = gout.t;
    out.shape = {M, N, 0, 0};
    ops::cuda::sum_partials(gpu_ctx(), gp.t, out);
    std::vector<uint16_t> got(size_t(M * ld));
    BITEXACT_CUDA_CHECK(
        cudaMemcpy(got.data(), gout.t.data, got.size() * 2, cudaMemcpyDeviceToHost));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float acc = p[size_t(m * N + n)];
        for (int64_t j = 1; j < P; ++j) acc += p[size_t(j * M * N + m * N + n)];
        ASSERT_EQ(got[size_t(m * ld + n)], f32_to_bf16(acc))
            << "P=" << P << " m=" << m << " n=" << n;
      }
  }
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
