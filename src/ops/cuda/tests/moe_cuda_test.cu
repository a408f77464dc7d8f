// CUDA mixture-of-experts ops against the CPU backend: routing (same experts, weights within
// f32 exp rounding, the same grouping, consistent tile maps), the grouped expert GEMM (every
// element within a stated tolerance of the CPU, and every row bit-equal to ops::cuda::linear of
// that row alone with its expert's matrix, on both tile heights), the combine, the whole expert
// block bitwise alone vs in batches (and not so in non-invariant mode), and CUDA-graph replay.
// Also bitwise: the one-launch and tiny routings vs the two-launch one vs the previous kernel,
// moe_linear_swiglu vs silu_mul then moe_linear, and moe_combine_add_rms_norm vs moe_combine
// then add_rms_norm.
#include <algorithm>

#include "ops/cuda/moe_route.h"
#include "ops/cuda/tests/moe_route_v0.cuh"
#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

class CudaMoe : public ::testing::Test {
 protected:
  void SetUp() override { init_cuda_backend(0); }
};

Tensor host(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::view(v.data(), DType::kF32, shape);
}

// Routing buffers of M tokens, k slots, E experts on one device.
struct Routing {
  DeviceTensor ids, weights, groups;     // device
  std::vector<int32_t> h_ids, h_groups;  // host (CPU routing)
  std::vector<float> h_weights;
  MoeRouting dev, cpu;
  Routing(int64_t M, int64_t k, int64_t E) {
    const int64_t g = moe_groups_len(M * k, E);
    ids = device_empty(DType::kI32, {M, k});
    weights = device_empty(DType::kF32, {M, k});
    groups = device_empty(DType::kI32, {g});
    poison(ids.t);
    poison(weights.t);
    poison(groups.t);
    dev = {ids.t, weights.t, groups.t, E};
    h_ids.assign(size_t(M * k), -1);
    h_weights.assign(size_t(M * k), NAN);
    h_groups.assign(size_t(g), -1);
    cpu = {Tensor::view(h_ids.data(), DType::kI32, {M, k}), host(h_weights, {M, k}),
           Tensor::view(h_groups.data(), DType::kI32, {g}), E};
  }
};

std::vector<int32_t> download_i32(const Tensor& t) {
  std::vector<uint8_t> b = download_bytes(t);
  std::vector<int32_t> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

// Logits on a grid of 1/4 in [-5, 5]: many exact ties (the tie-break is exercised) and distinct
// values far enough apart that f32 exp on either device orders them the same way.
std::vector<float> grid_logits(std::mt19937_64& rng, size_t n) {
  std::uniform_int_distribution<int> d(-20, 20);
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(rng)) / 4.0f;
  return v;
}

TEST_F(CudaMoe, RouteMatchesCpu) {
  std::mt19937_64 rng(test_seed("moe_route"));
  struct Case {
    int64_t M, E, k;
    bool norm;
  };
  for (const Case c : {Case{1, 128, 8, true}, Case{37, 128, 8, false}, Case{300, 8, 2, true},
                       Case{5, 16, 16, false}, Case{2048, 128, 8, true}, Case{3000, 40, 3, true},
                       Case{1, 1024, 8, true}}) {
    auto logits = grid_logits(rng, size_t(c.M * c.E));
    Routing r(c.M, c.k, c.E);
    ops::moe_route(cpu_ctx(), host(logits, {c.M, c.E}), c.norm, r.cpu);
    auto gl = upload(logits, DType::kBF16, {c.M, c.E});  // exact in bf16
    ops::moe_route(gpu_ctx(), gl.t, c.norm, r.dev);
    const std::string what = "M=" + std::to_string(c.M) + " E=" + std::to_string(c.E);
    EXPECT_EQ(download_i32(r.ids.t), r.h_ids) << what;
    // f32 exp (2 ulps on the GPU), a sum of E terms in another order, a division: 1e-5.
    expect_close(download(r.weights.t), r.h_weights, 0.0f, 1e-5f, what.c_str());
    // Offsets and grouped rows are integers: equal. Then the tile maps: tiles of one expert each,
    // covering its rows in order, 16 or 64 rows at a time.
    std::vector<int32_t> g = download_i32(r.groups.t);
    const int64_t R = c.M * c.k, rows_end = c.E + 1 + R;
    EXPECT_TRUE(std::equal(g.begin(), g.begin() + rows_end, r.h_groups.begin())) << what;
    int64_t at = rows_end;
    for (int tile : {16, 64}) {
      const int32_t n = g[size_t(at)];
      int32_t t = 0;
      for (int64_t e = 0; e < c.E; ++e)
        for (int32_t first = g[e]; first < g[e + 1]; first += tile, ++t) {
          ASSERT_LT(t, n) << what;
          EXPECT_EQ(g[size_t(at + 1 + 2 * t)], e) << what << " tile " << t;
          EXPECT_EQ(g[size_t(at + 2 + 2 * t)], first) << what << " tile " << t;
        }
      EXPECT_EQ(t, n) << what;
      at += 1 + 2 * ((R + tile - 1) / tile + std::min(c.E, R));
    }
  }
}

// One routing on one path: ids, weights and the whole groups tensor as bytes (unwritten entries
// keep the poison, so the two paths must also leave the same entries alone).
struct RouteBits {
  std::vector<uint8_t> ids, weights, groups;
};
RouteBits route_bits(const Tensor& logits, int64_t k, bool norm, MoeRoutePath path) {
  Routing r(logits.dim(0), k, logits.dim(1));
  moe_route_path(gpu_ctx(), logits, norm, r.dev, path);
  return {download_bytes(r.ids.t), download_bytes(r.weights.t), download_bytes(r.groups.t)};
}

// The one-launch path (route + group in one CTA) against the two-launch path, for every batch
// size it takes: ids, weights and groups bit for bit. Both against the routing kernel as it was
// (moe_route_v0.cuh), and every token against itself routed alone. bf16 logits on the 1/4 grid
// (ties everywhere; token 0 all equal), f32 logits continuous.
TEST_F(CudaMoe, FusedRouteEqualsSplitRouteAndPreviousKernel) {
  std::mt19937_64 rng(test_seed("moe route paths"));
  const int64_t kMaxM = 64;
  for (const int64_t E : {8, 64, 128, 256})
    for (const int64_t k : {2, 8})
      for (const DType dt : {DType::kBF16, DType::kF32}) {
        std::vector<float> logits = dt == DType::kBF16
                                        ? grid_logits(rng, size_t(kMaxM * E))
                                        : random_floats(rng, size_t(kMaxM * E), -6.f, 6.f);
        if (dt == DType::kBF16) std::fill(logits.begin(), logits.begin() + E, 0.5f);
        auto gl = upload(logits, dt, {kMaxM, E});
        std::vector<uint8_t> v0_ids[2], v0_w[2], alone_ids[2][kMaxM], alone_w[2][kMaxM];
        for (const bool norm : {false, true}) {
          auto ids = device_empty(DType::kI32, {kMaxM, k});
          auto w = device_empty(DType::kF32, {kMaxM, k});
          route_v0(gl.t, k, norm, ids.t, w.t);
          v0_ids[norm] = download_bytes(ids.t);
          v0_w[norm] = download_bytes(w.t);
          for (int64_t t = 0; t < kMaxM; ++t) {
            RouteBits one = route_bits(gl.t.slice_rows(t, t + 1), k, norm, MoeRoutePath::kSplit);
            alone_ids[norm][t] = one.ids;
            alone_w[norm][t] = one.weights;
          }
        }
        for (int64_t M = 1; M <= kMaxM; ++M) {
          ASSERT_TRUE(moe_route_fused(M, E, k));
          const bool norm = M % 2 == 0;
          const Tensor batch = gl.t.slice_rows(0, M);
          const RouteBits fused = route_bits(batch, k, norm, MoeRoutePath::kFused);
          const RouteBits split = route_bits(batch, k, norm, MoeRoutePath::kSplit);
          const std::string what = "E=" + std::to_string(E) + " k=" + std::to_string(k) +
                                   " M=" + std::to_string(M) + " " + std::string(dtype_name(dt));
          ASSERT_TRUE(same_bytes(fused.ids, split.ids)) << what;
          ASSERT_TRUE(same_bytes(fused.weights, split.weights)) << what;
          ASSERT_TRUE(same_bytes(fused.groups, split.groups)) << what;
          if (moe_route_tiny(M, E, k)) {  // the shuffle grouping (decode batches)
            const RouteBits tiny = route_bits(batch, k, norm, MoeRoutePath::kTiny);
            ASSERT_TRUE(same_bytes(tiny.ids, split.ids)) << what << " (tiny)";
            ASSERT_TRUE(same_bytes(tiny.weights, split.weights)) << what << " (tiny)";
            ASSERT_TRUE(same_bytes(tiny.groups, split.groups)) << what << " (tiny)";
          }
          const size_t n = size_t(M * k * 4);
          const auto first = [&](const std::vector<uint8_t>& v) {
            return std::vector<uint8_t>(v.begin(), v.begin() + std::ptrdiff_t(n));
          };
          ASSERT_TRUE(same_bytes(fused.ids, first(v0_ids[norm]))) << what << " (previous kernel)";
          ASSERT_TRUE(same_bytes(fused.weights, first(v0_w[norm]))) << what << " (previous kernel)";
          for (int64_t t = 0; t < M; ++t) {
            const size_t at = size_t(t * k * 4), len = size_t(k * 4);
            ASSERT_EQ(0, std::memcmp(fused.ids.data() + at, alone_ids[norm][t].data(), len))
                << what << " token " << t << " ids differ from the token alone";
            ASSERT_EQ(0, std::memcmp(fused.weights.data() + at, alone_w[norm][t].data(), len))
                << what << " token " << t << " weights differ from the token alone";
          }
        }
      }
}

// Past the one-launch bounds (512 and 1024 experts take 16 and 32 per lane) the split path still
// writes the previous kernel's bits.
TEST_F(CudaMoe, SplitRouteEqualsPreviousKernelForManyExperts) {
  std::mt19937_64 rng(test_seed("moe route many experts"));
  for (const int64_t E : {300, 512, 1024})
    for (const bool norm : {false, true}) {
      const int64_t M = 37, k = 8;
      auto gl = upload(grid_logits(rng, size_t(M * E)), DType::kBF16, {M, E});
      auto ids = device_empty(DType::kI32, {M, k});
      auto w = device_empty(DType::kF32, {M, k});
      route_v0(gl.t, k, norm, ids.t, w.t);
      const RouteBits got = route_bits(gl.t, k, norm, MoeRoutePath::kAuto);
      EXPECT_TRUE(same_bytes(got.ids, download_bytes(ids.t))) << "E=" << E;
      EXPECT_TRUE(same_bytes(got.weights, download_bytes(w.t))) << "E=" << E;
    }
}

// NaN probabilities (a NaN logit, an infinite one, a row of NaNs) rank below every number and
// among themselves by id: k distinct experts, as on the CPU, on both paths.
TEST_F(CudaMoe, NanRowsTakeDistinctExpertsLikeCpu) {
  const int64_t M = 3, E = 64, k = 8;
  std::mt19937_64 rng(test_seed("moe route nan"));
  std::vector<float> logits = grid_logits(rng, size_t(M * E));
  logits[5] = NAN;
  logits[E + 9] = INFINITY;
  std::fill(logits.begin() + 2 * E, logits.end(), NAN);
  Routing r(M, k, E);
  ops::moe_route(cpu_ctx(), host(logits, {M, E}), true, r.cpu);
  std::vector<uint8_t> cpu_ids(r.h_ids.size() * 4);
  std::memcpy(cpu_ids.data(), r.h_ids.data(), cpu_ids.size());
  auto gl = upload(logits, DType::kF32, {M, E});
  for (const MoeRoutePath path : {MoeRoutePath::kFused, MoeRoutePath::kSplit, MoeRoutePath::kTiny})
    EXPECT_TRUE(same_bytes(route_bits(gl.t, k, true, path).ids, cpu_ids)) << int(path);
}

TEST_F(CudaMoe, FusedRouteBounds) {
  EXPECT_TRUE(moe_route_fused(1, 128, 8));
  EXPECT_TRUE(moe_route_fused(64, 128, 8));
  EXPECT_FALSE(moe_route_fused(65, 128, 8));
  EXPECT_FALSE(moe_route_fused(1, 512, 8));
  EXPECT_FALSE(moe_route_fused(64, 32, 32));  // 2048 rows: more than one placement pass
  auto gl = device_empty(DType::kBF16, {65, 128});
  Routing r(65, 8, 128);
  EXPECT_ANY_THROW(moe_route_path(gpu_ctx(), gl.t, true, r.dev, MoeRoutePath::kFused));
  EXPECT_TRUE(moe_route_tiny(4, 128, 8));
  EXPECT_TRUE(moe_route_tiny(1, 1024, 32));
  EXPECT_FALSE(moe_route_tiny(5, 128, 2));
  EXPECT_FALSE(moe_route_tiny(2, 128, 32));  // 64 rows: more than the grouping warp's lanes
  EXPECT_ANY_THROW(moe_route_path(gpu_ctx(), gl.t.slice_rows(0, 5), true, r.dev, MoeRoutePath::kTiny));
}

// A routed batch with bf16 x [M or M*k, K] and experts w [E, N, K], on both devices.
struct GemmCase {
  int64_t M, E, k, N, K;
  bool per_slot;  // x has M*k rows (down) instead of M (gate_up)
};

TEST_F(CudaMoe, LinearMatchesCpuAndDenseLinearBits) {
  std::mt19937_64 rng(test_seed("moe_linear"));
  // 30B-A3B's gate_up and down matrices (16 of its experts, to keep host memory small), small
  // and large batches (R >= 32 E takes the 64-row tiles), 128 experts, and small odd shapes.
  for (const GemmCase c :
       {GemmCase{1, 16, 8, 1536, 2048, false}, GemmCase{3, 16, 8, 2048, 768, true},
        GemmCase{100, 16, 8, 1536, 2048, false}, GemmCase{80, 16, 8, 2048, 768, true},
        GemmCase{37, 128, 8, 64, 128, false}, GemmCase{600, 128, 8, 64, 64, true},
        GemmCase{19, 8, 2, 64, 64, false}, GemmCase{300, 8, 2, 96, 136, true},
        GemmCase{5, 16, 8, 24, 8, false}}) {
    const int64_t R = c.M * c.k, xr = c.per_slot ? R : c.M;
    auto logits = grid_logits(rng, size_t(c.M * c.E));
    Routing r(c.M, c.k, c.E);
    ops::moe_route(cpu_ctx(), host(logits, {c.M, c.E}), true, r.cpu);
    auto gl = upload(logits, DType::kBF16, {c.M, c.E});
    ops::moe_route(gpu_ctx(), gl.t, true, r.dev);
    auto x = random_floats(rng, size_t(xr * c.K)),
         w = random_floats(rng, size_t(c.E * c.N * c.K), -0.05f, 0.05f);
    round_bf16(x);
    round_bf16(w);
    std::vector<float> want(size_t(R * c.N));
    Tensor hw = host(w, {c.E, c.N, c.K}), hy = host(want, {R, c.N});
    ops::moe_linear(cpu_ctx(), host(x, {xr, c.K}), hw, r.cpu, hy);
    auto gx = upload(x, DType::kBF16, {xr, c.K}), gw = upload(w, DType::kBF16, {c.E, c.N, c.K});
    auto gy = device_empty(DType::kBF16, {R, c.N});
    poison(gy.t);
    ops::moe_linear(gpu_ctx(), gx.t, gw.t, r.dev, gy.t);
    const std::string what =
        "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K);
    // bf16 output rounding (2^-9 relative, x2) plus the two f32 summation orders over K of
    // products of size <= 0.05: 1e-4 absolute covers K = 2048.
    expect_close(download(gy.t), want, 1e-4f, 4e-3f, what.c_str());
    // Every row, bitwise, against the dense GEMM of that row alone with its expert's matrix.
    const std::vector<uint8_t> got = download_bytes(gy.t);
    auto one = device_empty(DType::kBF16, {1, c.N});
    int mismatched = 0;
    const int64_t step = std::max<int64_t>(1, R / 64);  // 64 rows per case keep the test fast
    for (int64_t row = 0; row < R; row += step) {
      const int32_t e = r.h_ids[size_t(row)];
      const int64_t src = c.per_slot ? row : row / c.k;
      Tensor xrow = gx.t.slice_rows(src, src + 1);
      Tensor we = Tensor::view(static_cast<char*>(gw.t.data) + size_t(e) * c.N * c.K * 2,
                               DType::kBF16, {c.N, c.K}, Device::kCuda);
      ops::linear(gpu_ctx(), xrow, we, one.t);
      std::vector<uint8_t> ref = download_bytes(one.t);
      mismatched += std::memcmp(ref.data(), got.data() + row * c.N * 2, size_t(c.N) * 2) != 0;
    }
    EXPECT_EQ(mismatched, 0) << what;
  }
}

// moe_linear_swiglu == silu_mul then moe_linear, bit for bit: the fused operand load (<= 8 rows:
// 30B-A3B's down matrix at batch 1, an odd K, K below one stage) and the unfused paths (16- and
// 64-row tiles), in both modes (the non-invariant mode's halved chunks too).
// The workspace h is poisoned first: the fused path must not read it.
TEST_F(CudaMoe, LinearSwigluEqualsSiluMulThenLinear) {
  std::mt19937_64 rng(test_seed("moe_linear_swiglu"));
  struct Case {
    int64_t M, E, k, N, I;
  };
  for (const Case c : {Case{1, 16, 8, 2048, 768}, Case{2, 16, 8, 2048, 768}, Case{8, 16, 8, 2048, 768},
                       Case{100, 16, 8, 2048, 768}, Case{4, 8, 2, 96, 136}, Case{5, 8, 2, 96, 136},
                       Case{300, 8, 2, 96, 136}, Case{3, 4, 2, 64, 8}}) {
    for (bool invariant : {true, false}) {
      const int64_t R = c.M * c.k;
      auto logits = grid_logits(rng, size_t(c.M * c.E));
      Routing r(c.M, c.k, c.E);
      auto gl = upload(logits, DType::kBF16, {c.M, c.E});
      const ExecContext ctx = gpu_ctx(nullptr, invariant);
      ops::moe_route(ctx, gl.t, true, r.dev);
      auto gu = upload(random_floats(rng, size_t(R * 2 * c.I), -4, 4), DType::kBF16, {R, 2 * c.I});
      auto w = upload(random_floats(rng, size_t(c.E * c.N * c.I), -0.05f, 0.05f), DType::kBF16,
                      {c.E, c.N, c.I});
      auto h = device_empty(DType::kBF16, {R, c.I});
      auto want = device_empty(DType::kBF16, {R, c.N}), got = device_empty(DType::kBF16, {R, c.N});
      poison(want.t);
      poison(got.t);
      ops::silu_mul(ctx, gu.t, h.t);
      ops::moe_linear(ctx, h.t, w.t, r.dev, want.t);
      poison(h.t);
      BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
      ops::moe_linear_swiglu(ctx, gu.t, w.t, r.dev, h.t, got.t);
      const std::string what = "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                               " I=" + std::to_string(c.I) + (invariant ? "" : " non-invariant");
      EXPECT_TRUE(same_bytes(download_bytes(got.t), download_bytes(want.t))) << what;
    }
  }
}

TEST_F(CudaMoe, CombineMatchesCpu) {
  std::mt19937_64 rng(test_seed("moe_combine"));
  const int64_t M = 77, E = 16, k = 8, H = 2048;
  auto logits = grid_logits(rng, size_t(M * E));
  Routing r(M, k, E);
  ops::moe_route(cpu_ctx(), host(logits, {M, E}), false, r.cpu);
  auto gl = upload(logits, DType::kBF16, {M, E});
  ops::moe_route(gpu_ctx(), gl.t, false, r.dev);
  auto y = random_floats(rng, size_t(M * k * H), -4, 4);
  round_bf16(y);
  std::vector<float> want(size_t(M * H));
  Tensor ho = host(want, {M, H});
  ops::moe_combine(cpu_ctx(), host(y, {M * k, H}), r.cpu, ho);
  auto gy = upload(y, DType::kBF16, {M * k, H});
  auto go = device_empty(DType::kBF16, {M, H});
  poison(go.t);
  ops::moe_combine(gpu_ctx(), gy.t, r.dev, go.t);
  // Same fma sequence on both devices (weights within a few ulps); bf16 output rounding.
  expect_close(download(go.t), want, 1e-3f, 8e-3f, "moe_combine");
}

// moe_combine_add_rms_norm == moe_combine then add_rms_norm, bit for bit (output and residual):
// row lengths on each of the norm's thread counts (32, 128, 256) and register shapes, norm
// weights in bf16 and f32, aligned rows (vector loads) and residual rows at an odd stride.
TEST_F(CudaMoe, CombineAddRmsNormEqualsTheTwoOps) {
  std::mt19937_64 rng(test_seed("moe_combine_add_rms_norm"));
  struct Case {
    int64_t M, k, H, res_stride;
    DType wt;
  };
  for (const Case c : {Case{1, 8, 2048, 2048, DType::kBF16}, Case{3, 2, 64, 64, DType::kF32},
                       Case{64, 8, 2048, 2048, DType::kF32}, Case{5, 8, 200, 200, DType::kBF16},
                       Case{2, 8, 4096, 4096, DType::kBF16}, Case{7, 2, 12288, 12288, DType::kF32},
                       Case{9, 8, 1024, 1031, DType::kBF16}, Case{4, 2, 256, 264, DType::kF32}}) {
    const int64_t E = 16;
    auto logits = grid_logits(rng, size_t(c.M * E));
    Routing r(c.M, c.k, E);
    auto gl = upload(logits, DType::kBF16, {c.M, E});
    ops::moe_route(gpu_ctx(), gl.t, true, r.dev);
    auto y =
        upload(random_floats(rng, size_t(c.M * c.k * c.H), -4, 4), DType::kBF16, {c.M * c.k, c.H});
    auto w = upload(random_floats(rng, size_t(c.H), 0.5f, 1.5f), c.wt, {c.H});
    const std::vector<float> res0 = random_floats(rng, size_t(c.M * c.res_stride), -8, 8);
    auto res_a = upload(res0, DType::kBF16, {c.M, c.res_stride});
    auto res_b = upload(res0, DType::kBF16, {c.M, c.res_stride});
    auto narrow = [&](const DeviceTensor& d) {
      Tensor t = d.t;
      t.shape[1] = c.H;  // rows of H at the buffer's stride
      return t;
    };
    Tensor ra = narrow(res_a), rb = narrow(res_b);
    auto combined = device_empty(DType::kBF16, {c.M, c.H});
    auto out_a = device_empty(DType::kBF16, {c.M, c.H}),
         out_b = device_empty(DType::kBF16, {c.M, c.H});
    poison(out_a.t);
    poison(out_b.t);
    const float eps = 1e-6f;
    ops::moe_combine(gpu_ctx(), y.t, r.dev, combined.t);
    ops::add_rms_norm(gpu_ctx(), ra, combined.t, w.t, eps, out_a.t);
    ops::moe_combine_add_rms_norm(gpu_ctx(), y.t, r.dev, rb, w.t, eps, out_b.t);
    const std::string what = "M=" + std::to_string(c.M) + " k=" + std::to_string(c.k) +
                             " H=" + std::to_string(c.H) +
                             " stride=" + std::to_string(c.res_stride);
    EXPECT_TRUE(same_bytes(download_bytes(out_b.t), download_bytes(out_a.t))) << what << " out";
    EXPECT_TRUE(same_bytes(download_bytes(res_b.t), download_bytes(res_a.t)))
        << what << " residual";
  }
}

// The expert block on the GPU (route, gate_up, down with SwiGLU, combine) with bf16 data.
struct Block {
  int64_t E, k, H, I;
  DeviceTensor router, gate_up, down;
  Block(std::mt19937_64& rng, int64_t e, int64_t kk, int64_t h, int64_t i)
      : E(e), k(kk), H(h), I(i) {
    router = upload(random_floats(rng, size_t(E * H)), DType::kBF16, {E, H});
    gate_up = upload(random_floats(rng, size_t(E * 2 * I * H), -0.05f, 0.05f), DType::kBF16,
                     {E, 2 * I, H});
    down = upload(random_floats(rng, size_t(E * H * I), -0.05f, 0.05f), DType::kBF16, {E, H, I});
  }
  // out[M, H] of x[M, H]; `moe` runs the expert ops, the router linear is always invariant.
  DeviceTensor run(const ExecContext& moe, const Tensor& x) {
    const int64_t M = x.dim(0);
    auto logits = device_empty(DType::kBF16, {M, E});
    auto gu = device_empty(DType::kBF16, {M * k, 2 * I}),
         act = device_empty(DType::kBF16, {M * k, I});
    auto y = device_empty(DType::kBF16, {M * k, H});
    DeviceTensor out = device_empty(DType::kBF16, {M, H});
    Routing r(M, k, E);
    ops::linear(gpu_ctx(), x, router.t, logits.t);
    ops::moe_route(moe, logits.t, true, r.dev);
    ops::moe_linear(moe, x, gate_up.t, r.dev, gu.t);
    ops::moe_linear_swiglu(moe, gu.t, down.t, r.dev, act.t, y.t);
    ops::moe_combine(moe, y.t, r.dev, out.t);
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
    return out;
  }
};

// Tokens [0, 256) computed alone vs inside batches of M tokens, bitwise. Small batches slide
// over all 256 tokens (their experts get <= 4 rows: the case the non-invariant mode treats
// differently); large ones cover the first 256 rows. Differences in non-invariant mode are
// f32-ulp sized and survive the bf16 rounding of a row only now and then, hence many rows.
int block_row_mismatches(bool invariant) {
  std::mt19937_64 rng(test_seed("moe block"));
  Block b(rng, 32, 8, 1024, 384);  // 30B-A3B's top-8, a quarter of its experts and widths
  const int64_t kMaxM = 1024, kChecked = 256;
  auto x = random_floats(rng, size_t(kMaxM * b.H), -2, 2);
  auto gx = upload(x, DType::kBF16, {kMaxM, b.H});
  std::vector<std::vector<uint8_t>> alone;
  for (int64_t t = 0; t < kChecked; ++t)
    alone.push_back(download_bytes(b.run(gpu_ctx(), gx.t.slice_rows(t, t + 1)).t));
  int mismatches = 0;
  auto compare = [&](int64_t first, int64_t M) {
    ExecContext ctx = gpu_ctx(nullptr, invariant);
    std::vector<uint8_t> out = download_bytes(b.run(ctx, gx.t.slice_rows(first, first + M)).t);
    for (int64_t t = first; t < std::min(first + M, kChecked); ++t)
      mismatches += std::memcmp(out.data() + (t - first) * b.H * 2, alone[size_t(t)].data(),
                                size_t(b.H) * 2) != 0;
  };
  for (int64_t M : {2, 3, 8})
    for (int64_t first = 0; first + M <= kChecked; first += M) compare(first, M);
  for (int64_t M : {24, 100, 256, 513, 1024}) compare(0, M);  // M >= 128: the 64-row tiles
  return mismatches;
}

TEST_F(CudaMoe, ExpertBlockRowsAreBatchInvariant) { EXPECT_EQ(block_row_mismatches(true), 0); }
TEST_F(CudaMoe, NonInvariantModeIsDetected) { EXPECT_GT(block_row_mismatches(false), 0); }

// Decode steps are captured in CUDA graphs: the routing is read from device memory, so a replay
// with new inputs in the same buffers equals an eager run on those inputs.
TEST_F(CudaMoe, GraphReplayEqualsEager) {
  std::mt19937_64 rng(test_seed("moe graph"));
  const int64_t M = 8, E = 128, k = 8, H = 512, I = 256;
  Block b(rng, E, k, H, I);
  auto x = device_empty(DType::kBF16, {M, H});
  auto logits = device_empty(DType::kBF16, {M, E});
  auto gu = device_empty(DType::kBF16, {M * k, 2 * I}),
       act = device_empty(DType::kBF16, {M * k, I});
  auto y = device_empty(DType::kBF16, {M * k, H}), out = device_empty(DType::kBF16, {M, H});
  Routing r(M, k, E);
  ExecContext ctx = gpu_ctx(static_cast<cudaStream_t>(create_stream()));
  auto step = [&] {
    ops::linear(ctx, x.t, b.router.t, logits.t);
    ops::moe_route(ctx, logits.t, true, r.dev);
    ops::moe_linear(ctx, x.t, b.gate_up.t, r.dev, gu.t);
    ops::moe_linear_swiglu(ctx, gu.t, b.down.t, r.dev, act.t, y.t);
    ops::moe_combine(ctx, y.t, r.dev, out.t);
  };
  auto set_x = [&](uint64_t salt) {
    std::mt19937_64 g(salt);
    auto h = random_floats(g, size_t(M * H), -2, 2);
    Tensor src = host(h, {M * H});
    Tensor dst = x.t.reshape({M * H});
    ops::copy(ctx, src, dst);
    ops::synchronize(ctx);
  };
  set_x(1);
  step();  // warm-up outside the capture (kernel attributes)
  ops::synchronize(ctx);
  graph_begin_capture(ctx);
  step();
  void* exec = graph_end_capture(ctx);
  for (uint64_t salt : {2, 3}) {
    set_x(salt);
    step();
    ops::synchronize(ctx);
    std::vector<uint8_t> eager = download_bytes(out.t);
    poison(out.t);
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());  // the poison is on the default stream
    graph_launch(ctx, exec);
    ops::synchronize(ctx);
    EXPECT_TRUE(same_bytes(download_bytes(out.t), eager)) << "input " << salt;
  }
  graph_destroy(exec);
  destroy_stream(ctx.stream);
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
