// The decode GEMMs that make their own x (linear_kernel.cuh's resident rows) on CUDA:
// ops::norm_linear (each CTA normalises the rows) against add_rms_norm or rms_norm then linear,
// and ops::swiglu_linear (each CTA applies SwiGLU to its chunk) against silu_mul then linear,
// bit for bit, on every path they can take (fused, L2 fold, cluster fold), every Qwen3 shape
// they serve, 1..4 rows, strided rows; against the CPU reference within a stated tolerance; a
// perturbed input is caught; bad arguments are refused.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "linear_test_util.cuh"

namespace bitexact::ops::cuda::linear_test {
namespace {

constexpr float kEps = 1e-6f;

// The weights whose input is a normalised row (K = the hidden size): qkv, gate_up (and the
// 30B-A3B attention), plus o-shaped weights of the same K for the narrow-N paths.
std::vector<Shape> norm_shapes() {
  std::vector<Shape> out;
  for (const Shape& s : all_shapes())
    if ((s.K == 1024 || s.K == 2048 || s.K == 4096) && s.N < 100000) out.push_back(s);
  return out;
}

struct Rows {  // residual, x, residual_out, y on the device, row strides with a gap
  int64_t M, K, N, ld;
  DeviceBuffer res, x, out, ref_res, hidden, y, ref_y;
  Rows(int64_t m, int64_t k, int64_t n)
      : M(m), K(k), N(n), ld(k + 64), res(m * ld * 2), x(m * ld * 2), out(m * ld * 2),
        ref_res(m * ld * 2), hidden(m * k * 2), y(m * n * 2), ref_y(m * n * 2) {}
  Tensor t(const DeviceBuffer& b) const { return dev_matrix(b.ptr, M, K, ld); }
};

void poison(const DeviceBuffer& b) { ASSERT_EQ(cudaMemset(b.ptr, 0xff, b.bytes), cudaSuccess); }

// y and the new residual of norm_linear on `path` vs add_rms_norm + linear (auto path, which
// the linear tests prove equal to every other path), as differing element counts.
std::pair<unsigned long long, unsigned long long> fused_vs_ops(Rows& r, const Tensor& norm_w,
                                                               const Tensor& w, bool add,
                                                               LinearPath path) {
  ExecContext ctx;
  ctx.device = Device::kCuda;
  Tensor res = r.t(r.res), x = r.t(r.x), out = r.t(r.out), ref_res = r.t(r.ref_res);
  Tensor hidden = dev_matrix(r.hidden.ptr, r.M, r.K, r.K);
  Tensor y = dev_matrix(r.y.ptr, r.M, r.N, r.N), ref_y = dev_matrix(r.ref_y.ptr, r.M, r.N, r.N);
  poison(r.out);
  poison(r.y);
  poison(r.ref_y);
  EXPECT_EQ(cudaMemcpy(r.ref_res.ptr, r.res.ptr, r.res.bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
  if (add) cuda::add_rms_norm(ctx, ref_res, x, norm_w, kEps, hidden);
  else cuda::rms_norm(ctx, res, norm_w, kEps, hidden);
  cuda::linear(ctx, hidden, w, ref_y);
  linear_detail::norm_linear_invariant(ctx, res, add ? &x : nullptr, norm_w, kEps, add ? &out : nullptr,
                                       w, y, path);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const unsigned long long dy = count_diffs(r.y.u16(), r.N, r.ref_y.u16(), r.N, r.M, r.N);
  const unsigned long long dr = add ? count_diffs(r.out.u16(), r.ld, r.ref_res.u16(), r.ld, r.M, r.K) : 0;
  return {dy, dr};
}

TEST(NormLinearCuda, FusedEqualsNormThenLinearOnEveryPath) {
  uint64_t salt = 100;
  int checked = 0;
  for (const Shape& s : norm_shapes()) {
    DeviceBuffer wd(size_t(s.N) * s.K * 2), nd(size_t(s.K) * 2);
    fill_random_device(wd.u16(), size_t(s.N) * s.K, salt++);
    fill_random_device(nd.u16(), size_t(s.K), salt++);
    Tensor w = dev_matrix(wd.ptr, s.N, s.K, s.K);
    Tensor norm_w = dev_matrix(nd.ptr, 1, s.K, s.K).reshape({s.K});
    const int S = linear_detail::linear_plan(s.N, s.K).S;
    for (int64_t M = 1; M <= 4; ++M) {
      Rows r(M, s.K, s.N);
      fill_random_device(r.res.u16(), r.res.bytes / 2, salt++);
      fill_random_device(r.x.u16(), r.x.bytes / 2, salt++);
      for (LinearPath path : {LinearPath::kAuto, LinearPath::kSmallFused, LinearPath::kSmallSplit,
                              LinearPath::kSmallCluster}) {
        if (path == LinearPath::kSmallCluster && (S < 2 || S > 4)) continue;
        for (bool add : {true, false}) {
          auto [dy, dr] = fused_vs_ops(r, norm_w, w, add, path);
          EXPECT_EQ(dy, 0u) << s.name << " M=" << M << " " << linear_detail::linear_path_name(path)
                            << (add ? " add" : " no add");
          EXPECT_EQ(dr, 0u) << s.name << " M=" << M << " residual";
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 100);
}

// The comparison above can fail: norm weights one ulp off change y.
TEST(NormLinearCuda, PerturbedNormIsCaught) {
  const int64_t N = 4096, K = 1024, M = 2;
  DeviceBuffer wd(size_t(N) * K * 2), nd(size_t(K) * 2), nd2(size_t(K) * 2);
  fill_random_device(wd.u16(), size_t(N) * K, 7);
  fill_random_device(nd.u16(), size_t(K), 8);
  ASSERT_EQ(cudaMemcpy(nd2.ptr, nd.ptr, nd.bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
  std::vector<uint16_t> e(static_cast<size_t>(K));  // every element one ulp off (one alone may round away)
  ASSERT_EQ(cudaMemcpy(e.data(), nd2.ptr, K * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  for (uint16_t& v : e) v ^= 1;
  ASSERT_EQ(cudaMemcpy(nd2.ptr, e.data(), K * 2, cudaMemcpyHostToDevice), cudaSuccess);
  Rows r(M, K, N);
  fill_random_device(r.res.u16(), r.res.bytes / 2, 9);
  fill_random_device(r.x.u16(), r.x.bytes / 2, 10);
  ExecContext ctx;
  ctx.device = Device::kCuda;
  Tensor w = dev_matrix(wd.ptr, N, K, K);
  Tensor res = r.t(r.res), x = r.t(r.x), out = r.t(r.out), ref_res = r.t(r.ref_res);
  Tensor hidden = dev_matrix(r.hidden.ptr, M, K, K);
  Tensor y = dev_matrix(r.y.ptr, M, N, N), ref_y = dev_matrix(r.ref_y.ptr, M, N, N);
  ASSERT_EQ(cudaMemcpy(r.ref_res.ptr, r.res.ptr, r.res.bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
  cuda::add_rms_norm(ctx, ref_res, x, dev_matrix(nd2.ptr, 1, K, K).reshape({K}), kEps, hidden);
  cuda::linear(ctx, hidden, w, ref_y);
  cuda::norm_linear(ctx, res, &x, dev_matrix(nd.ptr, 1, K, K).reshape({K}), kEps, &out, w, y);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_GT(count_diffs(r.y.u16(), N, r.ref_y.u16(), N, M, N), 0u);
}

// Against ops::cpu::norm_linear (f32 rows, no bf16 rounding of the residual or the normalised
// rows). Per element: |y - ref| <= 2^-7 |ref| + 2^-7 sum_k |n_k w_k| (n = the CPU's normalised
// row): the bf16 roundings of h and of n are 2^-9 relative each, y's 2^-9; factor 2 on top.
// The new residual: |r - ref| <= 2^-8 |ref| (one bf16 rounding). NaN never passes.
TEST(NormLinearCuda, MatchesCpuReference) {
  const int64_t N = 2048, K = 4096;
  for (int64_t M = 1; M <= 4; ++M) {
    auto rh = random_bf16(M * K, 200 + M), xh = random_bf16(M * K, 300 + M);
    auto wh = random_bf16(N * K, 400 + M), nh = random_bf16(K, 500 + M);
    std::vector<float> rf(M * K), xf(M * K), nf(K), ref_y(M * N), ref_res(M * K), n_cpu(M * K);
    for (int64_t i = 0; i < M * K; ++i) rf[i] = bf16_to_f32(rh[i]), xf[i] = bf16_to_f32(xh[i]);
    for (int64_t i = 0; i < K; ++i) nf[i] = bf16_to_f32(nh[i]);
    ExecContext cpu;
    Tensor rt = Tensor::view(rf.data(), DType::kF32, {M, K}), xt = Tensor::view(xf.data(), DType::kF32, {M, K});
    Tensor ot = Tensor::view(ref_res.data(), DType::kF32, {M, K}), ht = Tensor::view(n_cpu.data(), DType::kF32, {M, K});
    Tensor nt = Tensor::view(nf.data(), DType::kF32, {K}), wt = Tensor::view(wh.data(), DType::kBF16, {N, K});
    Tensor yt = Tensor::view(ref_y.data(), DType::kF32, {M, N});
    ops::norm_linear(cpu, rt, &xt, nt, kEps, &ot, wt, yt, ht);

    Rows r(M, K, N);
    std::vector<uint16_t> nb(nh);
    DeviceBuffer wd(wh.size() * 2), nd(nb.size() * 2);
    LT_CHECK(cudaMemcpy(wd.ptr, wh.data(), wd.bytes, cudaMemcpyHostToDevice));
    LT_CHECK(cudaMemcpy(nd.ptr, nb.data(), nd.bytes, cudaMemcpyHostToDevice));
    LT_CHECK(cudaMemcpy2D(r.res.ptr, r.ld * 2, rh.data(), K * 2, K * 2, M, cudaMemcpyHostToDevice));
    LT_CHECK(cudaMemcpy2D(r.x.ptr, r.ld * 2, xh.data(), K * 2, K * 2, M, cudaMemcpyHostToDevice));
    poison(r.out);
    poison(r.y);
    ExecContext ctx;
    ctx.device = Device::kCuda;
    Tensor res = r.t(r.res), x = r.t(r.x), out = r.t(r.out);
    Tensor hidden = dev_matrix(r.hidden.ptr, M, K, K), y = dev_matrix(r.y.ptr, M, N, N);
    Tensor w = dev_matrix(wd.ptr, N, K, K), norm_w = dev_matrix(nd.ptr, 1, K, K).reshape({K});
    ASSERT_TRUE(ops::norm_linear_fuses(ctx, M, K));
    ops::norm_linear(ctx, res, &x, norm_w, kEps, &out, w, y, hidden);
    std::vector<uint16_t> yh(M * N), oh(M * r.ld);
    LT_CHECK(cudaMemcpy(yh.data(), r.y.ptr, yh.size() * 2, cudaMemcpyDeviceToHost));
    LT_CHECK(cudaMemcpy(oh.data(), r.out.ptr, oh.size() * 2, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        const float got = bf16_to_f32(oh[m * r.ld + k]), want = ref_res[m * K + k];
        bad += !(std::fabs(got - want) <= std::ldexp(std::fabs(want), -8));
      }
      for (int64_t n = 0; n < N; ++n) {
        double sum_abs = 0;
        for (int64_t k = 0; k < K; ++k) sum_abs += std::fabs(double(n_cpu[m * K + k]) * bf16_to_f32(wh[n * K + k]));
        const float got = bf16_to_f32(yh[m * N + n]), want = ref_y[m * N + n];
        bad += !(std::fabs(got - want) <= std::ldexp(std::fabs(want), -7) + std::ldexp(sum_abs, -7));
      }
    }
    EXPECT_EQ(bad, 0) << "M=" << M;
  }
}

TEST(NormLinearCuda, RejectsBadArguments) {
  const int64_t N = 1024, K = 1024;
  DeviceBuffer wd(N * K * 2), nd(K * 2);
  Rows r(2, K, N);
  ExecContext ctx;
  ctx.device = Device::kCuda;
  Tensor w = dev_matrix(wd.ptr, N, K, K), norm_w = dev_matrix(nd.ptr, 1, K, K).reshape({K});
  Tensor res = r.t(r.res), x = r.t(r.x), out = r.t(r.out);
  Tensor y = dev_matrix(r.y.ptr, 2, N, N);
  auto kind = [&](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  // The new residual may not overwrite what other CTAs still read.
  EXPECT_EQ(kind([&] { cuda::norm_linear(ctx, res, &x, norm_w, kEps, &res, w, y); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind([&] { cuda::norm_linear(ctx, res, &x, norm_w, kEps, nullptr, w, y); }), ErrorKind::kInvalidArgument);
  // More rows than the fused kernel takes, and a K it does not take.
  Rows big(5, K, N);
  Tensor y5 = dev_matrix(big.y.ptr, 5, N, N);
  EXPECT_FALSE(cuda::norm_linear_fuses(ctx, 5, K));
  EXPECT_EQ(kind([&] { cuda::norm_linear(ctx, big.t(big.res), nullptr, norm_w, kEps, nullptr, w, y5); }),
            ErrorKind::kInvalidArgument);
  EXPECT_FALSE(cuda::norm_linear_fuses(ctx, 1, 1000));
  ctx.batch_invariant = false;
  EXPECT_FALSE(cuda::norm_linear_fuses(ctx, 1, K));
}

// silu_mul then linear (auto path) vs swiglu_linear on `path`, differing y elements.
unsigned long long swiglu_vs_ops(const DeviceBuffer& gu, int64_t M, int64_t K, int64_t ldg,
                                 const Tensor& w, LinearPath path, bool perturb_ref = false) {
  const int64_t N = w.dim(0);
  ExecContext ctx;
  ctx.device = Device::kCuda;
  DeviceBuffer act(M * K * 2), y(M * N * 2), ref_y(M * N * 2), gu_ref(gu.bytes);
  EXPECT_EQ(cudaMemcpy(gu_ref.ptr, gu.ptr, gu.bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
  if (perturb_ref) {  // every gate element of row 0, one ulp (one alone may round away)
    std::vector<uint16_t> e(static_cast<size_t>(K));
    EXPECT_EQ(cudaMemcpy(e.data(), gu_ref.ptr, K * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (uint16_t& v : e) v ^= 1;
    EXPECT_EQ(cudaMemcpy(gu_ref.ptr, e.data(), K * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
  poison(y);
  poison(ref_y);
  Tensor g = dev_matrix(gu.ptr, M, 2 * K, ldg), gr = dev_matrix(gu_ref.ptr, M, 2 * K, ldg);
  Tensor a = dev_matrix(act.ptr, M, K, K), yt = dev_matrix(y.ptr, M, N, N), rt = dev_matrix(ref_y.ptr, M, N, N);
  cuda::silu_mul(ctx, gr, a);
  cuda::linear(ctx, a, w, rt);
  linear_detail::swiglu_linear_invariant(ctx, g, w, yt, path);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return count_diffs(y.u16(), N, ref_y.u16(), N, M, N);
}

TEST(SwigluLinearCuda, FusedEqualsSiluMulThenLinearOnEveryPath) {
  uint64_t salt = 700;
  int checked = 0;
  // Every path whose resident rows fit (4 rows of the chunk, or of K unsplit, <= 48 KB), also
  // where the auto rule does not fuse (8B's down projection), so every kernel variant is checked.
  auto fits = [](int64_t K, int64_t res) { return K % 128 == 0 && 4 * res * 2 <= 48 * 1024; };
  for (const Shape& s : all_shapes()) {
    const auto plan = linear_detail::linear_plan(s.N, s.K);
    if (s.N > 100000 || !fits(s.K, plan.S > 1 ? plan.kc : s.K)) continue;
    DeviceBuffer wd(size_t(s.N) * s.K * 2);
    fill_random_device(wd.u16(), size_t(s.N) * s.K, salt++);
    Tensor w = dev_matrix(wd.ptr, s.N, s.K, s.K);
    for (int64_t M = 1; M <= 4; ++M) {
      const int64_t ldg = 2 * s.K + 64;
      DeviceBuffer gu(M * ldg * 2);
      fill_random_device(gu.u16(), gu.bytes / 2, salt++);
      for (LinearPath path : {LinearPath::kAuto, LinearPath::kSmallFused, LinearPath::kSmallSplit,
                              LinearPath::kSmallCluster}) {
        if (path == LinearPath::kSmallCluster && (plan.S < 2 || plan.S > 4)) continue;
        const bool fused = path == LinearPath::kSmallFused || plan.S == 1 ||
                           (path == LinearPath::kAuto && linear_detail::linear_auto_path(M, s.N, s.K) ==
                                                             LinearPath::kSmallFused);
        if (fused && !fits(s.K, s.K)) continue;
        EXPECT_EQ(swiglu_vs_ops(gu, M, s.K, ldg, w, path), 0u)
            << s.name << " M=" << M << " " << linear_detail::linear_path_name(path);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 60);
}

// The comparison above can fail: gate elements one ulp off change y.
TEST(SwigluLinearCuda, PerturbedInputIsCaught) {
  const int64_t N = 1024, K = 3072, M = 1;
  DeviceBuffer wd(N * K * 2), gu(M * 2 * K * 2);
  fill_random_device(wd.u16(), N * K, 31);
  fill_random_device(gu.u16(), M * 2 * K, 32);
  EXPECT_GT(swiglu_vs_ops(gu, M, K, 2 * K, dev_matrix(wd.ptr, N, K, K), LinearPath::kAuto, true), 0u);
}

// Against ops::swiglu_linear on the CPU (f32 act, no bf16 rounding): per element
// |y - ref| <= 2^-7 |ref| + 2^-7 sum_k |a_k w_k| (a = the CPU's act row), as for norm_linear.
TEST(SwigluLinearCuda, MatchesCpuReference) {
  const int64_t N = 1024, K = 2048;  // 4 chunks of 512: fused up to 4 rows
  for (int64_t M = 1; M <= 4; ++M) {
    auto gh = random_bf16(M * 2 * K, 900 + M), wh = random_bf16(N * K, 950 + M);
    std::vector<float> gf(M * 2 * K), act(M * K), ref(M * N);
    for (size_t i = 0; i < gf.size(); ++i) gf[i] = bf16_to_f32(gh[i]);
    ExecContext cpu;
    Tensor gt = Tensor::view(gf.data(), DType::kF32, {M, 2 * K}), at = Tensor::view(act.data(), DType::kF32, {M, K});
    Tensor wt = Tensor::view(wh.data(), DType::kBF16, {N, K}), rt = Tensor::view(ref.data(), DType::kF32, {M, N});
    ops::swiglu_linear(cpu, gt, wt, rt, at);
    DeviceBuffer gd(gh.size() * 2), wd(wh.size() * 2), ad(M * K * 2), yd(M * N * 2);
    LT_CHECK(cudaMemcpy(gd.ptr, gh.data(), gd.bytes, cudaMemcpyHostToDevice));
    LT_CHECK(cudaMemcpy(wd.ptr, wh.data(), wd.bytes, cudaMemcpyHostToDevice));
    poison(yd);
    ExecContext ctx;
    ctx.device = Device::kCuda;
    Tensor g = dev_matrix(gd.ptr, M, 2 * K, 2 * K), w = dev_matrix(wd.ptr, N, K, K);
    Tensor a = dev_matrix(ad.ptr, M, K, K), y = dev_matrix(yd.ptr, M, N, N);
    ASSERT_TRUE(ops::swiglu_linear_fuses(ctx, M, N, K));
    ops::swiglu_linear(ctx, g, w, y, a);
    std::vector<uint16_t> yh(M * N);
    LT_CHECK(cudaMemcpy(yh.data(), yd.ptr, yh.size() * 2, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double sum_abs = 0;
        for (int64_t k = 0; k < K; ++k) sum_abs += std::fabs(double(act[m * K + k]) * bf16_to_f32(wh[n * K + k]));
        const float got = bf16_to_f32(yh[m * N + n]), want = ref[m * N + n];
        bad += !(std::fabs(got - want) <= std::ldexp(std::fabs(want), -7) + std::ldexp(sum_abs, -7));
      }
    EXPECT_EQ(bad, 0) << "M=" << M;
  }
}

TEST(SwigluLinearCuda, RejectsBadArguments) {
  ExecContext ctx;
  ctx.device = Device::kCuda;
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 5, 1024, 3072));    // too many rows
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 1, 1024, 3000));    // K % 128
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 1, 8192, 8192));    // unsplit: 64 KB of rows per CTA
  EXPECT_TRUE(cuda::swiglu_linear_fuses(ctx, 2, 1024, 3072));     // Qwen3-0.6B's down projection
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 3, 1024, 3072));    // 3 x 768 per CTA
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 1, 4096, 12288));   // 8B's: 6144 per CTA
  DeviceBuffer gd(5 * 2 * 3072 * 2), wd(1024 * 3072 * 2), yd(5 * 1024 * 2);
  Tensor w = dev_matrix(wd.ptr, 1024, 3072, 3072);
  Tensor g5 = dev_matrix(gd.ptr, 5, 2 * 3072, 2 * 3072), y5 = dev_matrix(yd.ptr, 5, 1024, 1024);
  try {
    linear_detail::swiglu_linear_invariant(ctx, g5, w, y5, LinearPath::kAuto);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  }
  ctx.batch_invariant = false;
  EXPECT_FALSE(cuda::swiglu_linear_fuses(ctx, 1, 1024, 3072));
}

}  // namespace
}  // namespace bitexact::ops::cuda::linear_test
