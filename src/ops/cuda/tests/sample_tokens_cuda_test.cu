// CUDA sample_tokens against the CPU op, bit for bit on the token, on fresh random logits (bf16
// and f32; V = 151936, a small V, and a V that is no multiple of 4 or 8) with many temperatures,
// top_k values and seeds (token indices past 2^32 too), outputs poisoned before each run. The
// logprob must have the bits of CUDA log_softmax[token] (the host path's value on this device)
// and be close to the CPU's. Row invariance: a row alone gives what it gives inside a batch of
// 64 other rows. Also times the op at 64 x 151936 (printed, not checked).
#include <algorithm>

#include "ops/cuda/tests/sample_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {


std::vector<SampleRow> random_params(std::mt19937_64& rng, int64_t rows) {
  const float temps[] = {0.0f, 0.05f, 0.3f, 0.7f, 1.0f, 1.0f, 1.5f, 4.0f};
  const int ks[] = {0, 0, 0, 1, 2, 5, 20, 32};
  std::vector<SampleRow> p(static_cast<size_t>(rows));
  for (auto& r : p) {
    r.temperature = temps[rng() % 8];
    r.top_k = ks[rng() % 8];
    r.seed = rng();
    r.token_index = rng() % 4 == 0 ? rng() : rng() % 4096;
  }
  return p;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(CudaSampleTokens, EqualsCpuBitForBit) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_tokens"));
  int raced = 0;
  for (int64_t v : {int64_t(151936), int64_t(1000), int64_t(4099), int64_t(7)})
    for (DType dt : {DType::kBF16, DType::kF32}) {
      const int64_t rows = v > 10000 ? 40 : 96;
      std::normal_distribution<float> nd(0.0f, 1.0f + float(rng() % 6));
      std::vector<float> x(size_t(rows * v));
      for (auto& e : x) e = nd(rng);
      // Rows with exact ties (few levels), a NaN, -inf entries, and one row of -inf only.
      for (int64_t i = 0; i < v; ++i) x[size_t(v + i)] = float(int(nd(rng)) % 4);
      x[size_t(2 * v + 3 % v)] = NAN;
      for (int64_t i = 0; i < v; i += 3) x[size_t(3 * v + i)] = -INFINITY;
      for (int64_t i = 0; i < v; ++i) x[size_t(4 * v + i)] = -INFINITY;
      if (dt == DType::kBF16) round_bf16(x);
      std::vector<SampleRow> prm = random_params(rng, rows);
      prm[1].temperature = 1.0f, prm[4].temperature = 0.8f, prm[4].top_k = 0;
      auto gx = upload(x, dt, {rows, v});
      const Drawn want = cpu_draw(x, rows, v, prm), got = gpu_draw(gx.t, prm);
      // The candidate count (max_top_k) changes the cost only.
      const Drawn wide = gpu_draw(gx.t, prm, kMaxSampleTopK);
      EXPECT_EQ(wide.ids, got.ids);
      EXPECT_EQ(0, std::memcmp(wide.lps.data(), got.lps.data(), got.lps.size() * 4));
      const std::vector<float> glp = gpu_log_softmax(gx.t);
      for (int64_t r = 0; r < rows; ++r) {
        const SampleRow& p = prm[size_t(r)];
        ASSERT_EQ(got.ids[size_t(r)], want.ids[size_t(r)])
            << "V=" << v << " dt=" << int(dt) << " row " << r << " T=" << p.temperature << " k=" << p.top_k;
        const int32_t t = got.ids[size_t(r)];
        EXPECT_EQ(bits(got.lps[size_t(r)]), bits(glp[size_t(r * v + t)])) << "V=" << v << " row " << r;
        const float c = want.lps[size_t(r)], g = got.lps[size_t(r)];
        if (std::isfinite(c)) {  // CPU and CUDA log_softmax differ in rounding: ops_cuda_test's bound
          EXPECT_NEAR(g, c, 1e-4f + 1e-6f * std::fabs(c)) << "V=" << v << " row " << r;
        }
        raced += p.temperature > 0.0f;
      }
    }
  EXPECT_GT(raced, 100);
}

// Several draws of one row under many seeds: the CUDA race follows the CPU race everywhere, not
// only at the few (seed, index) pairs above.
TEST(CudaSampleTokens, ManySeedsOfOneRow) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_tokens seeds"));
  const int64_t rows = 256, v = 151936;
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> one(static_cast<size_t>(v));
  for (auto& e : one) e = nd(rng);
  round_bf16(one);
  std::vector<float> x;
  for (int64_t r = 0; r < rows; ++r) x.insert(x.end(), one.begin(), one.end());
  std::vector<SampleRow> prm(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) prm[size_t(r)] = {r % 2 ? 1.0f : 0.6f, r % 3 == 0 ? 20 : 0, rng(), uint64_t(r)};
  auto gx = upload(x, DType::kBF16, {rows, v});
  const Drawn want = cpu_draw(x, rows, v, prm), got = gpu_draw(gx.t, prm);
  EXPECT_EQ(got.ids, want.ids);
  std::vector<int32_t> distinct = got.ids;
  std::sort(distinct.begin(), distinct.end());
  EXPECT_GT(std::unique(distinct.begin(), distinct.end()) - distinct.begin(), 20);  // it samples
}

// A row alone and the same row at position 37 of a batch of 64 rows (other logits, other
// parameters): the same token and logprob bits.
TEST(CudaSampleTokens, RowAloneEqualsRowInBatch) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_tokens invariance"));
  for (int64_t v : {int64_t(151936), int64_t(999)}) {
    const int64_t rows = 64;
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> x(size_t(rows * v));
    for (auto& e : x) e = nd(rng);
    round_bf16(x);
    std::vector<SampleRow> prm = random_params(rng, rows);
    auto gx = upload(x, DType::kBF16, {rows, v});
    const Drawn batch = gpu_draw(gx.t, prm);
    for (int64_t r : {int64_t(0), int64_t(37), int64_t(63)})
      for (SampleRow p : {prm[size_t(r)], SampleRow{1.0f, 0, 77, 5}, SampleRow{0.7f, 12, 78, 6}, SampleRow{}}) {
        std::vector<SampleRow> bp = prm;
        bp[size_t(r)] = p;
        const Drawn in_batch = gpu_draw(gx.t, bp);
        std::vector<float> row(x.begin() + r * v, x.begin() + (r + 1) * v);
        auto g1 = upload(row, DType::kBF16, {1, v});
        const Drawn alone = gpu_draw(g1.t, {p});
        EXPECT_EQ(alone.ids[0], in_batch.ids[size_t(r)]) << "V=" << v << " row " << r;
        EXPECT_EQ(bits(alone.lps[0]), bits(in_batch.lps[size_t(r)])) << "V=" << v << " row " << r;
      }
    (void)batch;
  }
}

// Time of one op call at a decode step's shape, against the greedy path's two ops.
TEST(CudaSampleTokens, TimingAt64x151936) {
  init_cuda_backend(0);
  std::mt19937_64 rng(5);
  const int64_t rows = 64, v = 151936;
  std::vector<float> x = random_floats(rng, size_t(rows * v), -8.0f, 8.0f);
  auto gx = upload(x, DType::kBF16, {rows, v});
  std::vector<SampleRow> prm(static_cast<size_t>(rows), SampleRow{1.0f, 0, 1, 1});
  auto p = device_empty(DType::kI32, {rows, kSampleRowWords});
  auto ids = device_empty(DType::kI32, {rows}), lps = device_empty(DType::kF32, {rows});
  auto gi = device_empty(DType::kI32, {rows, 1}), gv = device_empty(DType::kF32, {rows, 1});
  auto time = [&](auto&& fn) {
    for (int i = 0; i < 3; ++i) fn();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a);
    for (int i = 0; i < 50; ++i) fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    return ms * 1000.0f / 50;
  };
  for (int k : {0, 20}) {
    for (auto& r : prm) r.top_k = k;
    BITEXACT_CUDA_CHECK(cudaMemcpy(p.t.data, prm.data(), prm.size() * sizeof(SampleRow), cudaMemcpyHostToDevice));
    const float us = time([&] { ops::sample_tokens(gpu_ctx(), gx.t, p.t, ids.t, lps.t, k); });
    std::printf("sample_tokens 64 x 151936 bf16, T=1 top_k=%d: %.1f us\n", k, us);
  }
  const float g = time([&] {
    ops::top_tokens(gpu_ctx(), gx.t, gi.t, gv.t);
    ops::top_logprobs(gpu_ctx(), gx.t, gi.t, gv.t);
  });
  std::printf("greedy path (top_tokens n=1 + top_logprobs n=1) 64 x 151936 bf16: %.1f us\n", g);
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
