// CUDA sample_tokens with top_p / min_p (and top_k above the candidate count): the radix-select
// cutoff (ops/cuda/sample_select.cuh) and the race over the kept keys against the CPU op (the
// host sampler's sorted walk, ops/sample_filter.h), bit for bit on the token and on the logprob
// (CUDA log_softmax's bits), on fresh random rows each run with outputs poisoned: flat rows (a
// nucleus of ~100k tokens at V = 151936), peaked rows, exact ties, NaN and -inf entries, a row
// of -inf only; top_p alone, min_p alone, both, with and without top_k (<= 32 from the
// candidates, > 32 by count select); V = 151936, 4099, 1000, 7; bf16 and f32. Also: exact
// threshold ties keep the lowest ids and a one-unit perturbation of the definition is seen; a
// row alone equals the row in a batch; timing at 64 x 151936 (printed).
#include <algorithm>
#include <set>

#include "ops/cuda/tests/sample_test_util.cuh"
#include "ops/sample_filter.h"

namespace bitexact::ops::cuda::test {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Filtered parameters: every row has top_p < 1 or min_p > 0 (or a top_k above 32), and some are
// greedy or plain so that the filtered rows run beside the other kinds.
std::vector<SampleRow> filtered_params(std::mt19937_64& rng, int64_t rows) {
  const float temps[] = {0.05f, 0.3f, 0.7f, 0.7f, 1.0f, 1.0f, 1.5f, 4.0f};
  const int ks[] = {0, 0, 0, 0, 1, 5, 20, 32, 50, 1000};
  const double tps[] = {1.0, 0.9, 0.9, 0.95, 0.5, 0.99, 0.2};
  const double mps[] = {0.0, 0.0, 0.0, 0.05, 0.1, 0.3, 1.0};
  std::vector<SampleRow> p(static_cast<size_t>(rows));
  for (auto& r : p) {
    r.temperature = temps[rng() % 8];
    r.top_k = ks[rng() % 10];
    r.top_p_units = filter::top_p_units(tps[rng() % 7]);
    r.min_p_units = filter::min_p_units(mps[rng() % 7]);
    if (r.top_p_units == 0 && r.min_p_units == 0 && r.top_k <= 32) r.top_p_units = filter::top_p_units(0.9);
    r.seed = rng();
    r.token_index = rng() % 4 == 0 ? rng() : rng() % 4096;
  }
  p[0] = SampleRow{};                    // greedy
  p[1] = SampleRow{1.0f, 0, 5, 6};       // plain temperature
  if (rows > 2) p[2] = SampleRow{0.8f, 7, 5, 6};  // plain top_k
  return p;
}

// Rows: 0..3 normal with a random spread, then flat (sd 0.25, nucleus of most of the row at
// top_p 0.9), peaked (sd 6), ties (few levels), a NaN, -inf every third, -inf only.
std::vector<float> make_rows(std::mt19937_64& rng, int64_t rows, int64_t v) {
  std::vector<float> x(size_t(rows * v));
  for (int64_t r = 0; r < rows; ++r) {
    const int kind = int(r % 8);
    std::normal_distribution<float> nd(0.0f, kind == 4 ? 0.25f : kind == 5 ? 6.0f : 1.0f + float(rng() % 4));
    float* row = x.data() + r * v;
    for (int64_t i = 0; i < v; ++i) row[i] = kind == 6 ? float(int(nd(rng)) % 3) : nd(rng);
    if (kind == 7) {
      row[rng() % v] = NAN;
      for (int64_t i = 0; i < v; i += 3) row[i] = -INFINITY;
    }
  }
  if (rows > 11)
    for (int64_t i = 0; i < v; ++i) x[size_t(11 * v + i)] = -INFINITY;
  return x;
}

TEST(CudaSampleFilter, EqualsCpuBitForBit) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_filter"));
  int filtered = 0;
  for (int64_t v : {int64_t(151936), int64_t(4099), int64_t(1000), int64_t(7)})
    for (DType dt : {DType::kBF16, DType::kF32}) {
      const int64_t rows = v > 10000 ? 48 : 96;
      std::vector<float> x = make_rows(rng, rows, v);
      if (dt == DType::kBF16) round_bf16(x);
      std::vector<SampleRow> prm = filtered_params(rng, rows);
      auto gx = upload(x, dt, {rows, v});
      const Drawn want = cpu_draw(x, rows, v, prm, 0), got = gpu_draw(gx.t, prm);
      // The candidate count changes the path of top_k rows (candidates or count select), never
      // a result.
      for (int n : {0, 1, kMaxSampleTopK}) {
        const Drawn other = gpu_draw(gx.t, prm, n);
        EXPECT_EQ(other.ids, got.ids) << "max_top_k " << n;
        EXPECT_EQ(0, std::memcmp(other.lps.data(), got.lps.data(), got.lps.size() * 4));
      }
      const std::vector<float> glp = gpu_log_softmax(gx.t);
      for (int64_t r = 0; r < rows; ++r) {
        const SampleRow& p = prm[size_t(r)];
        ASSERT_EQ(got.ids[size_t(r)], want.ids[size_t(r)])
            << "V=" << v << " dt=" << int(dt) << " row " << r << " T=" << p.temperature
            << " k=" << p.top_k << " P=" << p.top_p_units << " M=" << p.min_p_units;
        const int32_t t = got.ids[size_t(r)];
        EXPECT_EQ(bits(got.lps[size_t(r)]), bits(glp[size_t(r * v + t)])) << "V=" << v << " row " << r;
        filtered += p.temperature > 0.0f && (p.top_p_units || p.min_p_units);
      }
    }
  EXPECT_GT(filtered, 300);
}

// A flat row at V = 151936 under top_p 0.9 keeps ~100k tokens: many draws (token indices) of it
// follow the CPU op, and they spread (the kept set is large).
TEST(CudaSampleFilter, FlatNucleusManyDraws) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_filter flat"));
  const int64_t rows = 128, v = 151936;
  std::normal_distribution<float> nd(0.0f, 0.25f);
  std::vector<float> one(static_cast<size_t>(v));
  for (auto& e : one) e = nd(rng);
  round_bf16(one);
  std::vector<float> x;
  for (int64_t r = 0; r < rows; ++r) x.insert(x.end(), one.begin(), one.end());
  std::vector<SampleRow> prm(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    prm[size_t(r)] = {0.7f, r % 4 == 3 ? 2000 : 0, rng(), uint64_t(r), filter::top_p_units(0.9),
                      r % 2 ? filter::min_p_units(0.02) : 0};
  auto gx = upload(x, DType::kBF16, {rows, v});
  const Drawn want = cpu_draw(x, rows, v, prm, 0), got = gpu_draw(gx.t, prm);
  EXPECT_EQ(got.ids, want.ids);
  std::set<int32_t> distinct(got.ids.begin(), got.ids.end());
  EXPECT_GT(distinct.size(), 100u);
}

// Exact boundaries: 4 tied best tokens (W = 2^40 each) at ids {3, 9, 17, 40} of a row whose other
// tokens weigh 0. top_p 0.5 reaches thr = 2^41 exactly at the second: keep {3, 9}; with the
// definition perturbed by one unit of P (the same as one unit less weight at the boundary) the
// host keeps three, and the device's draws must then differ from that reference somewhere.
// min_p 1 keeps the 4 ties. top_p 0.75 and top_k 3 keep {3, 9, 17}.
TEST(CudaSampleFilter, ExactBoundaryAndPerturbation) {
  init_cuda_backend(0);
  for (int64_t v : {int64_t(151936), int64_t(64)})
    for (DType dt : {DType::kBF16, DType::kF32}) {
      std::vector<float> one(static_cast<size_t>(v), -40.0f);
      for (int t : {9, 3, 40, 17}) one[size_t(t)] = 2.0f;
      const int64_t rows = 200;
      std::vector<float> x;
      for (int64_t r = 0; r < rows; ++r) x.insert(x.end(), one.begin(), one.end());
      auto gx = upload(x, dt, {rows, v});
      struct Case {
        uint64_t P, M;
        int k;
        std::set<int32_t> keep;
      };
      for (const Case& c : {Case{filter::top_p_units(0.5), 0, 0, {3, 9}},
                            Case{0, filter::min_p_units(1.0), 0, {3, 9, 17, 40}},
                            Case{filter::top_p_units(0.75), 0, 0, {3, 9, 17}},
                            Case{0, filter::min_p_units(0.5), 3, {3, 9, 17}},
                            Case{filter::top_p_units(0.9), 0, 40, {3, 9, 17, 40}}}) {
        std::vector<SampleRow> prm(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) prm[size_t(r)] = {1.0f, c.k, 11, uint64_t(r), c.P, c.M};
        const Drawn got = gpu_draw(gx.t, prm), want = cpu_draw(x, rows, v, prm, 0);
        EXPECT_EQ(got.ids, want.ids);
        EXPECT_EQ(std::set<int32_t>(got.ids.begin(), got.ids.end()), c.keep) << "P " << c.P << " M " << c.M;
      }
      // The perturbed definition: P + 1 at top_p 0.5 keeps a third token on the host.
      std::vector<SampleRow> prm(static_cast<size_t>(rows)), bad(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        prm[size_t(r)] = {1.0f, 0, 11, uint64_t(r), filter::top_p_units(0.5), 0};
        bad[size_t(r)] = {1.0f, 0, 11, uint64_t(r), filter::top_p_units(0.5) + 1, 0};
      }
      const Drawn got = gpu_draw(gx.t, prm), perturbed = cpu_draw(x, rows, v, bad, 0);
      EXPECT_NE(got.ids, perturbed.ids) << "a one-unit change of the threshold must be visible";
    }
}

// A filtered row alone and the same row at positions 0, 37, 63 of a batch of 64: same bits.
TEST(CudaSampleFilter, RowAloneEqualsRowInBatch) {
  init_cuda_backend(0);
  std::mt19937_64 rng(test_seed("sample_filter invariance"));
  for (int64_t v : {int64_t(151936), int64_t(999)}) {
    const int64_t rows = 64;
    std::vector<float> x = make_rows(rng, rows, v);
    round_bf16(x);
    std::vector<SampleRow> prm = filtered_params(rng, rows);
    auto gx = upload(x, DType::kBF16, {rows, v});
    for (int64_t r : {int64_t(0), int64_t(37), int64_t(63)})
      for (SampleRow p : {prm[size_t(r)], SampleRow{0.7f, 0, 77, 5, filter::top_p_units(0.9), 0},
                          SampleRow{1.0f, 64, 78, 6, 0, filter::min_p_units(0.05)}}) {
        std::vector<SampleRow> bp = prm;
        bp[size_t(r)] = p;
        const Drawn in_batch = gpu_draw(gx.t, bp);
        std::vector<float> row(x.begin() + r * v, x.begin() + (r + 1) * v);
        auto g1 = upload(row, DType::kBF16, {1, v});
        const Drawn alone = gpu_draw(g1.t, {p});
        EXPECT_EQ(alone.ids[0], in_batch.ids[size_t(r)]) << "V=" << v << " row " << r;
        EXPECT_EQ(bits(alone.lps[0]), bits(in_batch.lps[size_t(r)])) << "V=" << v << " row " << r;
      }
  }
}

// Time of one op call at a decode step's shape: plain temperature against top_p 0.9 (flat and
// peaked rows), min_p, top_k + top_p (cut by select, n = 0 as the model passes it, or from 20
// candidates), plain top_k from candidates or by select. Also a batch of 1.
TEST(CudaSampleFilter, TimingAt64x151936) {
  init_cuda_backend(0);
  std::mt19937_64 rng(5);
  const int64_t rows = 64, v = 151936;
  auto ids = device_empty(DType::kI32, {rows}), lps = device_empty(DType::kF32, {rows});
  auto p = device_empty(DType::kI32, {rows, kSampleRowWords});
  auto time = [&](auto&& fn) {
    for (int i = 0; i < 3; ++i) fn();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a);
    for (int i = 0; i < 20; ++i) fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    return ms * 1000.0f / 20;
  };
  for (float sd : {0.25f, 2.0f, 6.0f}) {
    std::normal_distribution<float> nd(0.0f, sd);
    std::vector<float> x(size_t(rows * v));
    for (auto& e : x) e = nd(rng);
    auto gx = upload(x, DType::kBF16, {rows, v});
    struct Cfg {
      const char* name;
      SampleRow row;
      int n;  // max_top_k
    };
    const uint64_t p90 = filter::top_p_units(0.9), p95 = filter::top_p_units(0.95);
    for (const Cfg& c : {Cfg{"T=0.7", {0.7f, 0, 1, 1}, 0},
                         Cfg{"T=0.7 top_p=0.9", {0.7f, 0, 1, 1, p90, 0}, 0},
                         Cfg{"T=0.7 min_p=0.05", {0.7f, 0, 1, 1, 0, filter::min_p_units(0.05)}, 0},
                         Cfg{"T=0.7 top_k=20 top_p=0.95", {0.7f, 20, 1, 1, p95, 0}, 0},
                         Cfg{"T=0.7 top_k=20 top_p=0.95 n=20", {0.7f, 20, 1, 1, p95, 0}, 20},
                         Cfg{"T=0.7 top_k=50 top_p=0.9", {0.7f, 50, 1, 1, p90, 0}, 0},
                         Cfg{"T=0.7 top_k=20 n=20", {0.7f, 20, 1, 1}, 20},
                         Cfg{"T=0.7 top_k=20 n=0 (select)", {0.7f, 20, 1, 1}, 0}}) {
      std::vector<SampleRow> prm(static_cast<size_t>(rows), c.row);
      BITEXACT_CUDA_CHECK(cudaMemcpy(p.t.data, prm.data(), prm.size() * sizeof(SampleRow), cudaMemcpyHostToDevice));
      const int k = c.n;
      const float us = time([&] { ops::sample_tokens(gpu_ctx(), gx.t, p.t, ids.t, lps.t, k); });
      std::printf("sample_tokens 64 x 151936 bf16 sd %.2f, %-32s %8.1f us\n", sd, c.name, us);
      if (sd == 2.0f && c.n == 0) {  // the first row alone: a batch of 1
        Tensor x1 = gx.t, p1 = p.t, i1 = ids.t, l1 = lps.t;
        x1.shape[0] = p1.shape[0] = i1.shape[0] = l1.shape[0] = 1;
        const float us1 = time([&] { ops::sample_tokens(gpu_ctx(), x1, p1, i1, l1, 0); });
        std::printf("sample_tokens  1 x 151936 bf16 sd %.2f, %-32s %8.1f us\n", sd, c.name, us1);
      }
    }
  }
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
