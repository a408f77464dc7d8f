// CPU backend tests: each op against a naive double-precision reference (tolerances stated per
// op), and bitwise row invariance: a row computed alone equals the same row inside a batch.
// The same invariance checks in non-invariant mode must find a difference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "ops/tests/cpu_test_util.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

using test::randn;

Tensor t2(std::vector<float>& v, int64_t r, int64_t c) { return Tensor::view(v.data(), DType::kF32, {r, c}); }

double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

TEST(OpsCpu, LinearMatchesDoubleReference) {
  ExecContext ctx;
  for (auto [M, N, K] : {std::tuple{1, 7, 5}, {5, 33, 64}, {9, 100, 257}}) {
    auto x = randn(M * K, 1), w = randn(N * K, 2);
    std::vector<float> y(M * N, NAN);
    Tensor ty = t2(y, M, N);
    linear(ctx, t2(x, M, K), t2(w, N, K), ty);
    std::vector<double> ref(M * N);
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int k = 0; k < K; ++k) s += double(x[m * K + k]) * w[n * K + k];
        ref[m * N + n] = s;
      }
    // f32 accumulation of K products: relative error well under 1e-5 for these K.
    EXPECT_LT(rel_err(y, ref), 1e-5) << M << "x" << N << "x" << K;
  }
}

TEST(OpsCpu, LinearBf16WeightsMatchF32OfSameValues) {
  ExecContext ctx;
  const int M = 3, N = 20, K = 70;
  auto x = randn(M * K, 3), w = randn(N * K, 4);
  std::vector<uint16_t> wb(N * K);
  for (size_t i = 0; i < wb.size(); ++i) {
    wb[i] = f32_to_bf16(w[i]);
    w[i] = bf16_to_f32(wb[i]);
  }
  std::vector<float> y1(M * N), y2(M * N);
  Tensor a = t2(y1, M, N), b = t2(y2, M, N);
  linear(ctx, t2(x, M, K), t2(w, N, K), a);
  linear(ctx, t2(x, M, K), Tensor::view(wb.data(), DType::kBF16, {N, K}), b);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4));  // same values, same order
}

// Row r of an M-row product vs the same row computed alone, for M = 1..40.
static int linear_row_mismatches(bool invariant) {
  ExecContext ctx;
  ctx.batch_invariant = invariant;
  const int N = 48, K = 200, kMaxM = 40;
  auto x = randn(kMaxM * K, 5), w = randn(N * K, 6);
  std::vector<float> full(kMaxM * N);
  int mismatches = 0;
  for (int M = 1; M <= kMaxM; ++M) {
    Tensor tf = t2(full, M, N);
    linear(ctx, t2(x, M, K), t2(w, N, K), tf);
    for (int r = 0; r < M; ++r) {
      std::vector<float> xr(x.begin() + r * K, x.begin() + (r + 1) * K), one(N);
      Tensor to = t2(one, 1, N);
      ExecContext solo = ctx;
      solo.batch_invariant = true;  // the reference is always the invariant single-row result
      linear(solo, t2(xr, 1, K), t2(w, N, K), to);
      mismatches += std::memcmp(one.data(), full.data() + r * N, N * 4) != 0;
    }
  }
  return mismatches;
}

TEST(OpsCpu, LinearRowsAreBatchInvariant) { EXPECT_EQ(linear_row_mismatches(true), 0); }
TEST(OpsCpu, LinearNonInvariantModeIsDetected) { EXPECT_GT(linear_row_mismatches(false), 0); }

TEST(OpsCpu, RmsNormAndLogSoftmaxMatchReference) {
  ExecContext ctx;
  const int R = 4, D = 37;
  auto x = randn(R * D, 7), w = randn(D, 8);
  std::vector<float> y(R * D);
  Tensor ty = t2(y, R, D);
  rms_norm(ctx, t2(x, R, D), Tensor::view(w.data(), DType::kF32, {D}), 1e-6f, ty);
  std::vector<double> ref(R * D);
  for (int r = 0; r < R; ++r) {
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += double(x[r * D + i]) * x[r * D + i];
    double inv = 1.0 / std::sqrt(ss / D + 1e-6);
    for (int i = 0; i < D; ++i) ref[r * D + i] = w[i] * x[r * D + i] * inv;
  }
  EXPECT_LT(rel_err(y, ref), 1e-6);

  std::vector<float> lp(R * D);
  Tensor tl = t2(lp, R, D);
  log_softmax(ctx, t2(x, R, D), tl);
  for (int r = 0; r < R; ++r) {
    double mx = -1e30, s = 0;
    for (int i = 0; i < D; ++i) mx = std::max(mx, double(x[r * D + i]));
    for (int i = 0; i < D; ++i) s += std::exp(x[r * D + i] - mx);
    for (int i = 0; i < D; ++i) ref[r * D + i] = x[r * D + i] - mx - std::log(s);
  }
  EXPECT_LT(rel_err(lp, ref), 1e-6);
}

TEST(OpsCpu, RopeHalfSplitAndInterleaved) {
  ExecContext ctx;
  const int M = 3, H = 2, Dh = 8, P = 16;
  std::vector<float> cs(P * Dh);
  for (int p = 0; p < P; ++p)
    for (int i = 0; i < Dh / 2; ++i) {
      cs[p * Dh + i] = std::cos(p * 0.3f * (i + 1));
      cs[p * Dh + Dh / 2 + i] = std::sin(p * 0.3f * (i + 1));
    }
  std::vector<int32_t> pos = {0, 5, 11};
  for (bool inter : {false, true}) {
    auto x = randn(M * H * Dh, 9), orig = x;
    Tensor tx = Tensor::view(x.data(), DType::kF32, {M, H, Dh});
    rope(ctx, tx, Tensor::view(pos.data(), DType::kI32, {M}), t2(cs, P, Dh), inter);
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < Dh / 2; ++i) {
          int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + Dh / 2;
          float c = cs[pos[m] * Dh + i], s = cs[pos[m] * Dh + Dh / 2 + i];
          const float* o = &orig[(m * H + h) * Dh];
          EXPECT_FLOAT_EQ(x[(m * H + h) * Dh + a], o[a] * c - o[b] * s);
          EXPECT_FLOAT_EQ(x[(m * H + h) * Dh + b], o[b] * c + o[a] * s);
        }
  }
}

// Attention over a paged cache: one sequence of length L stored in scattered blocks; each
// query position p attends [0, p]. Compared with a naive double softmax, and bitwise between
// "all tokens at once" and "one token at a time".
TEST(OpsCpu, AttentionMatchesReferenceAndIsInvariant) {
  const int L = 600, Hq = 4, Hkv = 2, Dh = 16, BS = 16, blocks = (L + BS - 1) / BS + 3;
  auto kc = randn(blocks * BS * Hkv * Dh, 10), vc = randn(blocks * BS * Hkv * Dh, 11);
  auto q = randn(L * Hq * Dh, 12);
  std::vector<int32_t> table(blocks);
  for (int i = 0; i < blocks; ++i) table[i] = (i * 7 + 3) % blocks;  // scattered
  Tensor tk = Tensor::view(kc.data(), DType::kF32, {blocks, BS, Hkv, Dh});
  Tensor tv = Tensor::view(vc.data(), DType::kF32, {blocks, BS, Hkv, Dh});
  const float scale = 0.25f;

  auto run = [&](bool invariant, int first, int count, std::vector<float>& out) {
    ExecContext ctx;
    ctx.batch_invariant = invariant;
    std::vector<int32_t> seq(count, 0), pos(count);
    for (int i = 0; i < count; ++i) pos[i] = first + i;
    AttentionMeta meta;
    meta.token_seq = Tensor::view(seq.data(), DType::kI32, {count});
    meta.token_pos = Tensor::view(pos.data(), DType::kI32, {count});
    meta.block_table = Tensor::view(table.data(), DType::kI32, {1, blocks});
    meta.block_size = BS;
    Tensor tq = Tensor::view(q.data() + size_t(first) * Hq * Dh, DType::kF32, {count, Hq, Dh});
    Tensor to = Tensor::view(out.data() + size_t(first) * Hq * Dh, DType::kF32, {count, Hq, Dh});
    attention(ctx, tq, tk, tv, meta, scale, to);
  };
  for (bool invariant : {true, false}) {
    std::vector<float> all(L * Hq * Dh), one(L * Hq * Dh);
    run(invariant, 0, L, all);
    for (int p = 0; p < L; ++p) run(invariant, p, 1, one);
    bool equal = std::memcmp(all.data(), one.data(), all.size() * 4) == 0;
    EXPECT_EQ(equal, invariant) << (invariant ? "invariant mode must give equal bits"
                                              : "non-invariant mode must differ");
    if (!invariant) continue;
    std::vector<double> ref(all.size());
    for (int p = 0; p < L; ++p)
      for (int h = 0; h < Hq; ++h) {
        int kvh = h / (Hq / Hkv);
        std::vector<double> s(p + 1);
        double mx = -1e30, sum = 0;
        for (int j = 0; j <= p; ++j) {
          const float* k = &kc[((table[j / BS] * BS + j % BS) * Hkv + kvh) * Dh];
          double d = 0;
          for (int i = 0; i < Dh; ++i) d += double(q[(p * Hq + h) * Dh + i]) * k[i];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int j = 0; j <= p; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int i = 0; i < Dh; ++i) {
          double o = 0;
          for (int j = 0; j <= p; ++j) o += s[j] * vc[((table[j / BS] * BS + j % BS) * Hkv + kvh) * Dh + i];
          ref[(p * Hq + h) * Dh + i] = o / sum;
        }
      }
    EXPECT_LT(rel_err(all, ref), 1e-5);
  }
}

// top_logprobs is top_tokens of the log-softmax rows, whatever the logits' dtype.
TEST(OpsCpu, TopLogprobsIsTopTokensOfLogSoftmax) {
  ExecContext ctx;
  const int64_t R = 3, V = 517, n = 7;
  std::mt19937 g(9);
  std::uniform_int_distribution<int> level(0, 40);
  std::vector<float> x(R * V), lp(R * V);
  for (auto& e : x) e = float(level(g)) * 0.5f - 10.0f;
  Tensor tlp = t2(lp, R, V);
  log_softmax(ctx, t2(x, R, V), tlp);
  std::vector<int32_t> want_ids(R * n), ids(R * n);
  std::vector<float> want_vals(R * n), vals(R * n);
  Tensor wi = Tensor::view(want_ids.data(), DType::kI32, {R, n}), wv = t2(want_vals, R, n);
  top_tokens(ctx, tlp, wi, wv);
  Tensor ti = Tensor::view(ids.data(), DType::kI32, {R, n}), tv = t2(vals, R, n);
  top_logprobs(ctx, t2(x, R, V), ti, tv);
  EXPECT_EQ(ids, want_ids);
  EXPECT_EQ(0, std::memcmp(vals.data(), want_vals.data(), vals.size() * 4));
  // bf16 logits: the same as their f32 widening.
  std::vector<uint16_t> xb(R * V);
  for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);  // levels are exact in bf16
  Tensor tb = Tensor::view(xb.data(), DType::kBF16, {R, V});
  top_logprobs(ctx, tb, ti, tv);
  EXPECT_EQ(ids, want_ids);
  Tensor bad = Tensor::view(ids.data(), DType::kI32, {R + 1, n});
  EXPECT_THROW(top_logprobs(ctx, t2(x, R, V), bad, tv), Error);
}

TEST(OpsCpu, TopTokensOrdersByValueThenLowestColumn) {
  ExecContext ctx;
  const int64_t R = 3, V = 1000;
  std::mt19937 g(5);
  std::uniform_int_distribution<int> level(0, 9);  // many ties
  std::vector<float> x(R * V);
  for (auto& e : x) e = float(level(g));
  x[7] = NAN;
  for (int n : {1, 5, 32}) {
    std::vector<int32_t> ids(R * n);
    std::vector<float> vals(R * n);
    Tensor ti = Tensor::view(ids.data(), DType::kI32, {R, n}), tv = t2(vals, R, n);
    top_tokens(ctx, t2(x, R, V), ti, tv);
    for (int64_t r = 0; r < R; ++r) {
      std::vector<int32_t> order(V);
      for (int i = 0; i < V; ++i) order[i] = i;
      const float* row = x.data() + r * V;
      auto key = [&](int32_t i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return key(a) > key(b); });
      for (int j = 0; j < n; ++j) {
        EXPECT_EQ(ids[r * n + j], order[j]) << r << " " << j;
        EXPECT_EQ(vals[r * n + j], row[order[j]]);
      }
    }
  }
}
