// CUDA top_tokens against the CPU op, bit for bit: rows of a Qwen3-sized vocabulary with many
// exact ties (values drawn from a small bf16 set), in bf16 and f32, for n = 1 (greedy) and
// n = 20 (top logprobs), ids and values poisoned first. Plus row invariance: a row alone gives
// what it gives inside a batch of 64. And top_logprobs == top_tokens(log_softmax(x)), bit for bit.
#include <algorithm>

#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

struct Top {
  std::vector<int32_t> ids;
  std::vector<float> vals;
};

Top cpu_top(std::vector<float>& x, int64_t rows, int64_t v, int n) {
  Top t{std::vector<int32_t>(size_t(rows * n)), std::vector<float>(size_t(rows * n))};
  Tensor hx = Tensor::view(x.data(), DType::kF32, {rows, v});
  Tensor ids = Tensor::view(t.ids.data(), DType::kI32, {rows, n});
  Tensor vals = Tensor::view(t.vals.data(), DType::kF32, {rows, n});
  ops::top_tokens(cpu_ctx(), hx, ids, vals);
  return t;
}

Top gpu_top(const Tensor& x, int n) {
  const int64_t rows = x.dim(0);
  auto ids = device_empty(DType::kI32, {rows, n}), vals = device_empty(DType::kF32, {rows, n});
  poison(ids.t);
  poison(vals.t);
  ops::cuda::top_tokens(gpu_ctx(), x, ids.t, vals.t);
  Top t{std::vector<int32_t>(size_t(rows * n)), std::vector<float>(size_t(rows * n))};
  BITEXACT_CUDA_CHECK(cudaMemcpy(t.ids.data(), ids.t.data, ids.t.nbytes(), cudaMemcpyDeviceToHost));
  BITEXACT_CUDA_CHECK(cudaMemcpy(t.vals.data(), vals.t.data, vals.t.nbytes(), cudaMemcpyDeviceToHost));
  return t;
}

TEST(CudaTopTokens, EqualsCpuWithTies) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("top_tokens"));
  const int64_t rows = 19, v = 151936;
  // Values from 64 levels: every top-20 holds exact ties, resolved by the lowest column.
  std::uniform_int_distribution<int> level(0, 63);
  std::vector<float> x(size_t(rows * v));
  for (auto& e : x) e = float(level(rng)) * 0.25f - 8.0f;
  x[5] = NAN;  // NaN ranks last
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int n : {1, 20, 32}) {
      auto gx = upload(x, dt, {rows, v});
      Top want = cpu_top(x, rows, v, n), got = gpu_top(gx.t, n);
      EXPECT_EQ(got.ids, want.ids) << "n=" << n;
      EXPECT_EQ(0, std::memcmp(got.vals.data(), want.vals.data(), want.vals.size() * 4)) << "n=" << n;
    }
}

// Rows of a strided view whose length is not a multiple of 8: the vector loads cover the
// aligned body and the scalar loop the tail, and both together must find the CPU's answer.
TEST(CudaTopTokens, StridedRowsWithTail) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("top_tokens tail"));
  const int64_t rows = 5, ld = 50024, v = 50021;
  std::vector<float> full = random_floats(rng, size_t(rows * ld), -10, 10);
  for (int64_t r = 0; r < rows; ++r) full[size_t(r * ld + v - 1 - r)] = 50.0f;  // max in the tail
  std::vector<float> x(size_t(rows * v));
  for (int64_t r = 0; r < rows; ++r)
    std::copy(full.begin() + r * ld, full.begin() + r * ld + v, x.begin() + r * v);
  auto gx = upload(full, DType::kBF16, {rows, ld});
  Tensor view = gx.t;
  view.shape[1] = v;
  for (int n : {1, 20}) {
    std::vector<float> xb = x;  // the CPU op sees the bf16 values the GPU reads
    round_bf16(xb);
    Top want = cpu_top(xb, rows, v, n), got = gpu_top(view, n);
    EXPECT_EQ(got.ids, want.ids) << "n=" << n;
    EXPECT_EQ(0, std::memcmp(got.vals.data(), want.vals.data(), want.vals.size() * 4)) << "n=" << n;
  }
}

// Slicing is speed only: one CTA per row, the default slicing and odd slice counts give the same
// ids and values (ties everywhere, a NaN, rows whose best entries sit in one slice).
TEST(CudaTopTokens, EverySlicingGivesTheSameResult) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("top_tokens slices"));
  const int64_t rows = 7, v = 151936;
  std::uniform_int_distribution<int> level(0, 63);
  std::vector<float> x(size_t(rows * v));
  for (auto& e : x) e = float(level(rng)) * 0.25f - 8.0f;
  x[size_t(v + 3)] = NAN;
  for (int64_t c = 0; c < 40; ++c) x[size_t(2 * v + 100000 + c)] = 30.0f;  // all in one slice
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int n : {1, 20, 32}) {
      auto gx = upload(x, dt, {rows, v});
      auto run = [&](int slices) {
        auto ids = device_empty(DType::kI32, {rows, n}), vals = device_empty(DType::kF32, {rows, n});
        poison(ids.t);
        poison(vals.t);
        ops::cuda::top_tokens_sliced(gpu_ctx(), gx.t, ids.t, vals.t, slices);
        return std::make_pair(download_bytes(ids.t), download_bytes(vals.t));
      };
      const auto one = run(1);
      for (int slices : {0, 2, 7, 19, 64}) {
        const auto got = run(slices);
        EXPECT_TRUE(same_bytes(got.first, one.first)) << "ids n=" << n << " slices=" << slices;
        EXPECT_TRUE(same_bytes(got.second, one.second)) << "vals n=" << n << " slices=" << slices;
      }
    }
}

TEST(CudaTopTokens, RowAloneEqualsRowInBatch) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("top_tokens invariance"));
  const int64_t rows = 64, v = 32000;
  auto x = random_floats(rng, size_t(rows * v), -10, 10);
  auto batch = upload(x, DType::kF32, {rows, v});
  Top all = gpu_top(batch.t, 20);
  for (int64_t r : {0, 17, 63}) {
    std::vector<float> one(x.begin() + r * v, x.begin() + (r + 1) * v);
    auto alone = upload(one, DType::kF32, {1, v});
    Top t = gpu_top(alone.t, 20);
    EXPECT_TRUE(std::equal(t.ids.begin(), t.ids.end(), all.ids.begin() + r * 20)) << r;
  }
}

// top_logprobs ranks x - lse without writing the f32 rows; it must return exactly what
// top_tokens finds in log_softmax's rows (the greedy path and the host-sampling path report the
// same logprobs). Ties everywhere, a NaN row entry, a masked (-inf) slice, odd and short rows,
// strided rows, bf16 and f32, n = 1 / 5 / 20.
TEST(CudaTopTokens, TopLogprobsEqualsTopTokensOfLogSoftmax) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("top_logprobs"));
  std::uniform_int_distribution<int> level(0, 63);
  for (int64_t v : {int64_t(151936), int64_t(8193), int64_t(1000), int64_t(37)}) {
    const int64_t rows = 6, ld = v + 8;
    std::vector<float> x(size_t(rows * ld));
    for (auto& e : x) e = float(level(rng)) * 0.25f - 8.0f;
    x[3] = NAN;
    if (v > 9000)
      for (int64_t c = 0; c < 8192; ++c) x[size_t(2 * ld + c)] = -INFINITY;  // a masked slice
    for (DType dt : {DType::kBF16, DType::kF32}) {
      auto gx = upload(x, dt, {rows, ld});
      Tensor view = gx.t;
      view.shape[1] = v;  // strided rows (ld > v)
      auto lp = device_empty(DType::kF32, {rows, v});
      poison(lp.t);
      ops::cuda::log_softmax(gpu_ctx(), view, lp.t);
      for (int n : {1, 5, 20}) {
        if (n > v) continue;
        auto ids = device_empty(DType::kI32, {rows, n}), vals = device_empty(DType::kF32, {rows, n});
        poison(ids.t);
        poison(vals.t);
        ops::cuda::top_logprobs(gpu_ctx(), view, ids.t, vals.t);
        Top want = gpu_top(lp.t, n);
        const std::string what = "v=" + std::to_string(v) + " n=" + std::to_string(n) +
                                 (dt == DType::kBF16 ? " bf16" : " f32");
        EXPECT_TRUE(same_bytes(download_bytes(ids.t),
                               std::vector<uint8_t>(reinterpret_cast<uint8_t*>(want.ids.data()),
                                                    reinterpret_cast<uint8_t*>(want.ids.data()) +
                                                        want.ids.size() * 4)))
            << what;
        EXPECT_TRUE(same_bytes(download_bytes(vals.t),
                               std::vector<uint8_t>(reinterpret_cast<uint8_t*>(want.vals.data()),
                                                    reinterpret_cast<uint8_t*>(want.vals.data()) +
                                                        want.vals.size() * 4)))
            << what;
      }
    }
  }
}

// More rows than a grid's y dimension allows (65535): a long prefill with prompt logprobs. The
// log-softmax against the CPU op, and the greedy path's top-1 against it.
TEST(CudaTopTokens, LogSoftmaxOfManyRows) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("log_softmax rows"));
  const int64_t rows = 70000, v = 24;
  std::vector<float> x = random_floats(rng, size_t(rows * v), -8, 8);
  round_bf16(x);
  std::vector<float> want(x.size());
  Tensor hx = Tensor::view(x.data(), DType::kF32, {rows, v});
  Tensor hw = Tensor::view(want.data(), DType::kF32, {rows, v});
  ops::log_softmax(cpu_ctx(), hx, hw);
  auto gx = upload(x, DType::kBF16, {rows, v});
  auto lp = device_empty(DType::kF32, {rows, v});
  poison(lp.t);
  ops::cuda::log_softmax(gpu_ctx(), gx.t, lp.t);
  expect_close(download(lp.t), want, 1e-5f, 1e-6f, "log_softmax of 70000 rows");
  auto ids = device_empty(DType::kI32, {rows, 1}), vals = device_empty(DType::kF32, {rows, 1});
  poison(ids.t);
  poison(vals.t);
  ops::cuda::top_logprobs(gpu_ctx(), gx.t, ids.t, vals.t);
  Top ref = gpu_top(lp.t, 1);
  EXPECT_TRUE(same_bytes(download_bytes(vals.t),
                         std::vector<uint8_t>(reinterpret_cast<uint8_t*>(ref.vals.data()),
                                              reinterpret_cast<uint8_t*>(ref.vals.data()) +
                                                  ref.vals.size() * 4)));
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
