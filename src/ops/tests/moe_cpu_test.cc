// CPU mixture-of-experts ops against naive double-precision references (tolerances stated per
// op), the routing tie-break, the grouping layout, and bitwise row invariance of the expert
// block: a token routed and computed alone equals the same token inside batches of 2..40 (and
// the non-invariant mode, which splits K for small expert groups, is seen to break it), and the
// combine fused with the residual add and RMSNorm against the two ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "ops/tests/cpu_test_util.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

using test::randn;

Tensor view2(std::vector<float>& v, int64_t r, int64_t c) {
  return Tensor::view(v.data(), DType::kF32, {r, c});
}

// Host storage for a MoeRouting of M tokens, k slots, E experts.
struct Routing {
  std::vector<int32_t> ids, groups;
  std::vector<float> weights;
  MoeRouting r;
  Routing(int64_t M, int64_t k, int64_t E)
      : ids(size_t(M * k), -1),
        groups(size_t(moe_groups_len(M * k, E)), -1),
        weights(size_t(M * k), NAN) {
    r.expert_ids = Tensor::view(ids.data(), DType::kI32, {M, k});
    r.weights = Tensor::view(weights.data(), DType::kF32, {M, k});
    r.groups = Tensor::view(groups.data(), DType::kI32, {int64_t(groups.size())});
    r.num_experts = E;
  }
};

// softmax in double, experts sorted by (prob desc, id asc), renormalised if asked.
void reference_route(const float* logits, int E, int k, bool norm, std::vector<int>& ids,
                     std::vector<double>& w) {
  double mx = -1e300, sum = 0;
  for (int e = 0; e < E; ++e) mx = std::max(mx, double(logits[e]));
  std::vector<double> p(E);
  for (int e = 0; e < E; ++e) sum += p[e] = std::exp(double(logits[e]) - mx);
  std::vector<int> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  ids.assign(order.begin(), order.begin() + k);
  w.clear();
  double top = 0;
  for (int s = 0; s < k; ++s) top += p[ids[s]] / sum;
  for (int s = 0; s < k; ++s) w.push_back(p[ids[s]] / sum / (norm ? top : 1.0));
}

// The expert block of one layer on M tokens: route, gate_up, silu_mul, down, combine.
struct Experts {
  int64_t E, k, H, I;
  std::vector<float> router, gate_up, down;  // [E,H] (router weights), [E,2I,H], [E,H,I]
  Experts(int64_t e, int64_t kk, int64_t h, int64_t i, uint32_t seed)
      : E(e),
        k(kk),
        H(h),
        I(i),
        router(randn(size_t(E * H), seed)),
        gate_up(randn(size_t(E * 2 * I * H), seed + 1, 0.2f)),
        down(randn(size_t(E * H * I), seed + 2, 0.2f)) {}

  // `moe` runs the expert ops, `dense` the router linear and silu_mul.
  std::vector<float> run(const ExecContext& dense, const ExecContext& moe, std::vector<float>& x,
                         int64_t M) {
    std::vector<float> logits(size_t(M * E)), gu(size_t(M * k * 2 * I)), act(size_t(M * k * I)),
        y(size_t(M * k * H)), out(size_t(M * H));
    Tensor tl = view2(logits, M, E), tg = view2(gu, M * k, 2 * I), ta = view2(act, M * k, I);
    Tensor ty = view2(y, M * k, H), to = view2(out, M, H);
    linear(dense, view2(x, M, H), view2(router, E, H), tl);
    Routing r(M, k, E);
    moe_route(moe, tl, true, r.r);
    moe_linear(moe, view2(x, M, H), Tensor::view(gate_up.data(), DType::kF32, {E, 2 * I, H}), r.r,
               tg);
    silu_mul(dense, tg, ta);
    moe_linear(moe, ta, Tensor::view(down.data(), DType::kF32, {E, H, I}), r.r, ty);
    moe_combine(moe, ty, r.r, to);
    return out;
  }
};

}  // namespace

TEST(MoeCpu, RouteMatchesDoubleReferenceAndGroupsRows) {
  ExecContext ctx;
  for (auto [M, E, k, norm] :
       {std::tuple{1, 8, 2, true}, {13, 16, 8, false}, {37, 128, 8, true}, {5, 3, 3, false}}) {
    auto logits = randn(size_t(M * E), 11 + E, 2.0f);
    Routing r(M, k, E);
    moe_route(ctx, view2(logits, M, E), norm, r.r);
    double worst = 0;
    for (int m = 0; m < M; ++m) {
      std::vector<int> ids;
      std::vector<double> w;
      reference_route(logits.data() + m * E, E, k, norm, ids, w);
      for (int s = 0; s < k; ++s) {
        ASSERT_EQ(r.ids[m * k + s], ids[s]) << "token " << m << " slot " << s;
        worst = std::max(worst, std::abs(r.weights[m * k + s] - w[s]) / w[s]);
      }
    }
    // f32 exp, sum and division: a few ulps.
    EXPECT_LT(worst, 2e-6) << M << " tokens, " << E << " experts, top-" << k;
    // Offsets then rows: every row once, grouped by its expert, ascending within a group.
    const int32_t* off = r.groups.data();
    const int32_t* rows = off + E + 1;
    ASSERT_EQ(off[0], 0);
    ASSERT_EQ(off[E], M * k);
    std::vector<int> seen(size_t(M * k), 0);
    for (int e = 0; e < E; ++e)
      for (int i = off[e]; i < off[e + 1]; ++i) {
        ASSERT_EQ(r.ids[rows[i]], e);
        if (i > off[e]) {
          ASSERT_LT(rows[i - 1], rows[i]);
        }
        ++seen[rows[i]];
      }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), M * k);
  }
}

TEST(MoeCpu, EqualProbabilitiesPickTheLowestExpertIds) {
  ExecContext ctx;
  const int E = 12, k = 4;
  // Token 0: all equal. Token 1: experts 9, 3 and 7 tie for the top, then 5 and 1 tie.
  std::vector<float> logits(2 * E, 0.0f);
  for (int e : {9, 3, 7}) logits[E + e] = 2.0f;
  for (int e : {5, 1}) logits[E + e] = 1.0f;
  Routing r(2, k, E);
  moe_route(ctx, view2(logits, 2, E), false, r.r);
  EXPECT_EQ(std::vector<int32_t>(r.ids.begin(), r.ids.begin() + k),
            (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(std::vector<int32_t>(r.ids.begin() + k, r.ids.end()),
            (std::vector<int32_t>{3, 7, 9, 1}));
  EXPECT_EQ(r.weights[0], r.weights[3]);
  EXPECT_FLOAT_EQ(r.weights[0], 1.0f / E);
}

TEST(MoeCpu, LinearMatchesDoubleReferenceAndLinearOnEachRow) {
  ExecContext ctx;
  const int M = 9, E = 6, k = 3, N = 40, K = 72;
  auto logits = randn(size_t(M * E), 3);
  Routing r(M, k, E);
  moe_route(ctx, view2(logits, M, E), false, r.r);
  auto w = randn(size_t(E * N * K), 4);
  Tensor tw = Tensor::view(w.data(), DType::kF32, {E, N, K});
  for (int64_t x_rows : {M, M * k}) {  // one row per token (gate_up) or per slot (down)
    auto x = randn(size_t(x_rows * K), 5);
    std::vector<float> y(size_t(M * k * N), NAN);
    Tensor ty = view2(y, M * k, N);
    moe_linear(ctx, view2(x, x_rows, K), tw, r.r, ty);
    double num = 0, den = 0;
    for (int row = 0; row < M * k; ++row) {
      const int e = r.ids[row];
      const float* xr = x.data() + (x_rows == M ? row / k : row) * K;
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int kk = 0; kk < K; ++kk) s += double(xr[kk]) * w[(e * N + n) * K + kk];
        num += (y[row * N + n] - s) * (y[row * N + n] - s);
        den += s * s;
      }
      // Bit for bit the dense linear of that row alone with that expert's matrix.
      std::vector<float> xa(xr, xr + K), one(N);
      Tensor to = view2(one, 1, N);
      linear(ctx, view2(xa, 1, K), Tensor::view(w.data() + e * N * K, DType::kF32, {N, K}), to);
      EXPECT_EQ(0, std::memcmp(one.data(), y.data() + row * N, N * 4)) << "row " << row;
    }
    // f32 accumulation over K = 72: well under 1e-6 relative.
    EXPECT_LT(std::sqrt(num / den), 1e-6);
  }
}

TEST(MoeCpu, CombineMatchesDoubleReference) {
  ExecContext ctx;
  const int M = 7, E = 5, k = 3, H = 33;
  auto logits = randn(size_t(M * E), 6);
  Routing r(M, k, E);
  moe_route(ctx, view2(logits, M, E), true, r.r);
  auto y = randn(size_t(M * k * H), 7);
  std::vector<float> out(size_t(M * H));
  Tensor to = view2(out, M, H);
  moe_combine(ctx, view2(y, M * k, H), r.r, to);
  double worst = 0;
  for (int m = 0; m < M; ++m)
    for (int h = 0; h < H; ++h) {
      double s = 0, mag = 0;
      for (int j = 0; j < k; ++j) {
        s += double(r.weights[m * k + j]) * y[(m * k + j) * H + h];
        mag += std::abs(double(r.weights[m * k + j]) * y[(m * k + j) * H + h]);
      }
      worst = std::max(worst, std::abs(out[m * H + h] - s) / mag);
    }
  EXPECT_LT(worst, 1e-6);  // k = 3 f32 fmas
}

// The fused op == moe_combine then add_rms_norm, bit for bit (output and residual), with
// residual rows at a stride wider than H and norm weights in f32 and bf16.
TEST(MoeCpu, CombineAddRmsNormEqualsTheTwoOps) {
  ExecContext ctx;
  for (auto [M, E, k, H] : {std::tuple{7, 5, 3, 33}, {1, 16, 8, 64}, {40, 8, 2, 96}}) {
    auto logits = randn(size_t(M * E), 12);
    Routing r(M, k, E);
    moe_route(ctx, view2(logits, M, E), true, r.r);
    auto y = randn(size_t(M * k * H), 13);
    const int64_t stride = H + 3;
    const auto res0 = randn(size_t(M * stride), 14, 4.0f);
    auto w = randn(size_t(H), 15);
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
    const Tensor weights[] = {Tensor::view(w.data(), DType::kF32, {H}),
                              Tensor::view(wb.data(), DType::kBF16, {H})};
    for (const Tensor& wt : weights) {
      std::vector<float> res_a = res0, res_b = res0, combined(size_t(M * H));
      std::vector<float> out_a(size_t(M * H), NAN), out_b(size_t(M * H), NAN);
      auto rows = [&](std::vector<float>& v) {
        Tensor t = Tensor::view(v.data(), DType::kF32, {M, H});
        t.stride[0] = stride;
        return t;
      };
      Tensor ra = rows(res_a), rb = rows(res_b), tc = view2(combined, M, H);
      Tensor oa = view2(out_a, M, H), ob = view2(out_b, M, H);
      moe_combine(ctx, view2(y, M * k, H), r.r, tc);
      add_rms_norm(ctx, ra, tc, wt, 1e-6f, oa);
      moe_combine_add_rms_norm(ctx, view2(y, M * k, H), r.r, rb, wt, 1e-6f, ob);
      EXPECT_EQ(0, std::memcmp(out_a.data(), out_b.data(), out_a.size() * 4)) << M << " tokens";
      EXPECT_EQ(0, std::memcmp(res_a.data(), res_b.data(), res_a.size() * 4)) << M << " tokens";
    }
  }
}

TEST(MoeCpu, Bf16ExpertWeightsEqualF32OfSameValues) {
  ExecContext ctx;
  const int M = 4, E = 3, k = 2, N = 16, K = 64;
  auto logits = randn(size_t(M * E), 8);
  Routing r(M, k, E);
  moe_route(ctx, view2(logits, M, E), true, r.r);
  auto w = randn(size_t(E * N * K), 9), x = randn(size_t(M * K), 10);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = bf16_to_f32(wb[i] = f32_to_bf16(w[i]));
  std::vector<float> y1(size_t(M * k * N)), y2(y1.size());
  Tensor a = view2(y1, M * k, N), b = view2(y2, M * k, N);
  moe_linear(ctx, view2(x, M, K), Tensor::view(w.data(), DType::kF32, {E, N, K}), r.r, a);
  moe_linear(ctx, view2(x, M, K), Tensor::view(wb.data(), DType::kBF16, {E, N, K}), r.r, b);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4));
}

// Token t's block output inside a batch of M tokens vs token t alone (always in invariant mode),
// for M = 1..40: 8 experts top-2, so groups range from 1 row to more than 4. Only the MoE ops
// take the mode under test (the router linear stays invariant), so the non-invariant case shows
// that the expert GEMM itself, not the dense linear, breaks invariance there.
static int block_row_mismatches(bool invariant) {
  ExecContext ctx;
  ctx.batch_invariant = invariant;
  ExecContext solo;  // the reference: invariant, one token
  const int64_t H = 64, kMaxM = 40;
  Experts ex(8, 2, H, 48, 21);
  auto x = randn(size_t(kMaxM * H), 22);
  std::vector<std::vector<float>> alone;
  for (int64_t t = 0; t < kMaxM; ++t) {
    std::vector<float> xt(x.begin() + t * H, x.begin() + (t + 1) * H);
    alone.push_back(ex.run(solo, solo, xt, 1));
  }
  int mismatches = 0;
  for (int64_t M = 1; M <= kMaxM; ++M) {
    std::vector<float> xb(x.begin(), x.begin() + M * H);
    std::vector<float> out = ex.run(solo, ctx, xb, M);
    for (int64_t t = 0; t < M; ++t)
      mismatches += std::memcmp(out.data() + t * H, alone[t].data(), H * 4) != 0;
  }
  return mismatches;
}

TEST(MoeCpu, ExpertBlockRowsAreBatchInvariant) { EXPECT_EQ(block_row_mismatches(true), 0); }
TEST(MoeCpu, NonInvariantModeIsDetected) { EXPECT_GT(block_row_mismatches(false), 0); }

// moe_linear_swiglu is defined as silu_mul then moe_linear (CUDA fuses them; its test compares
// bits there); here: the same values through the op interface, and shape errors are reported.
TEST(MoeCpu, LinearSwigluIsSiluMulThenLinearAndChecksShapes) {
  ExecContext ctx;
  const int64_t M = 6, E = 4, k = 2, N = 24, I = 16;
  auto logits = randn(size_t(M * E), 31);
  Routing r(M, k, E);
  moe_route(ctx, view2(logits, M, E), true, r.r);
  auto gu = randn(size_t(M * k * 2 * I), 32), w = randn(size_t(E * N * I), 33, 0.2f);
  std::vector<float> h(size_t(M * k * I)), want(size_t(M * k * N)), got(want.size(), NAN);
  Tensor tg = view2(gu, M * k, 2 * I), th = view2(h, M * k, I), tw = Tensor::view(w.data(), DType::kF32, {E, N, I});
  Tensor twant = view2(want, M * k, N), tgot = view2(got, M * k, N);
  silu_mul(ctx, tg, th);
  moe_linear(ctx, th, tw, r.r, twant);
  std::fill(h.begin(), h.end(), NAN);
  moe_linear_swiglu(ctx, tg, tw, r.r, th, tgot);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
  Tensor narrow = view2(gu, M * k, I);  // gate_up must be [M*k, 2I]
  try {
    moe_linear_swiglu(ctx, narrow, tw, r.r, th, tgot);
    FAIL() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);  // a shape error is a caller's bug (dispatch.cc)
    EXPECT_NE(std::string(e.what()).find("moe_linear_swiglu"), std::string::npos);
  }
}
