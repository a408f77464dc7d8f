// qk_norm_rope_kv_write on the CPU: bit for bit the five ops it replaces in the model (q/k
// rms_norm, rope of q and k, kv_cache_write), for head_dim 64 and 128, with and without the
// q/k norm, both rope layouts, f32 and bf16 norm weights; plus its shape checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/ops.h"
#include "ops/tests/cpu_test_util.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

// A fused qkv buffer [M, (Hq + 2 Hkv) * Dh] with q, k, v views, paged caches, a rope table.
struct Prep {
  int64_t M, Hq, Hkv, Dh, P = 64, blocks = 8, block_size = 4;
  std::vector<float> qkv, kc, vc, cs, qn, kn;
  std::vector<uint16_t> qn16, kn16;  // bf16 copies of the norm weights
  std::vector<int32_t> pos, slots;

  Prep(int64_t m, int64_t hq, int64_t hkv, int64_t dh, uint32_t seed)
      : M(m), Hq(hq), Hkv(hkv), Dh(dh) {
    qkv = test::randn(size_t(M * width()), seed, 2.0f);
    kc = test::randn(size_t(blocks * block_size * Hkv * Dh), seed + 1);
    vc = test::randn(kc.size(), seed + 2);
    qn = test::randn(size_t(Dh), seed + 3, 0.3f);
    kn = test::randn(size_t(Dh), seed + 4, 0.3f);
    for (auto* w : {&qn, &kn})
      for (float& x : *w) x = bf16_to_f32(f32_to_bf16(1.0f + x));  // bf16-exact, near 1
    for (float x : qn) qn16.push_back(f32_to_bf16(x));
    for (float x : kn) kn16.push_back(f32_to_bf16(x));
    cs.resize(size_t(P * Dh));
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < Dh / 2; ++i) {
        const double f = std::pow(1e4, -2.0 * double(i) / double(Dh));
        cs[size_t(p * Dh + i)] = float(std::cos(double(p) * f));
        cs[size_t(p * Dh + Dh / 2 + i)] = float(std::sin(double(p) * f));
      }
    std::mt19937 g(seed + 5);
    pos.resize(size_t(M));
    for (auto& p : pos) p = int32_t(g() % uint32_t(P));
    std::vector<int32_t> all(size_t(blocks * block_size));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), g);
    slots.assign(all.begin(), all.begin() + M);  // distinct, scattered over the blocks
  }
  int64_t width() const { return (Hq + 2 * Hkv) * Dh; }
  Tensor heads(int64_t col, int64_t h) {
    Tensor t = Tensor::view(qkv.data() + col, DType::kF32, {M, h, Dh});
    t.stride = {width(), Dh, 1, 0};
    return t;
  }
  Tensor q() { return heads(0, Hq); }
  Tensor k() { return heads(Hq * Dh, Hkv); }
  Tensor v() { return heads((Hq + Hkv) * Dh, Hkv); }
  Tensor cache(std::vector<float>& c) {
    return Tensor::view(c.data(), DType::kF32, {blocks, block_size, Hkv, Dh});
  }
  Tensor norm(bool bf16, bool is_k) {
    if (bf16) return Tensor::view((is_k ? kn16 : qn16).data(), DType::kBF16, {Dh});
    return Tensor::view((is_k ? kn : qn).data(), DType::kF32, {Dh});
  }
  Tensor cos_sin() { return Tensor::view(cs.data(), DType::kF32, {P, Dh}); }
  Tensor positions() { return Tensor::view(pos.data(), DType::kI32, {M}); }
  Tensor slot_ids() { return Tensor::view(slots.data(), DType::kI32, {M}); }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(AttentionPrep, FusedEqualsTheFiveOpsBitForBit) {
  ExecContext ctx;
  const float eps = 1e-6f;
  uint32_t seed = 100;
  for (int64_t dh : {64, 128})
    for (bool with_norm : {true, false})
      for (bool interleaved : {false, true})
        for (bool bf16_w : {false, true}) {
          SCOPED_TRACE("Dh " + std::to_string(dh) + " norm " + std::to_string(with_norm) +
                       " interleaved " + std::to_string(interleaved) + " bf16 weights " +
                       std::to_string(bf16_w));
          Prep ref(11, 8, 2, dh, ++seed);
          Prep got = ref;
          const std::vector<float> qkv0 = ref.qkv, kc0 = ref.kc;
          {  // the model's former sequence
            Tensor q = ref.q(), k = ref.k(), kc = ref.cache(ref.kc), vc = ref.cache(ref.vc);
            if (with_norm) {
              rms_norm(ctx, q, ref.norm(bf16_w, false), eps, q);
              rms_norm(ctx, k, ref.norm(bf16_w, true), eps, k);
            }
            rope(ctx, q, ref.positions(), ref.cos_sin(), interleaved);
            rope(ctx, k, ref.positions(), ref.cos_sin(), interleaved);
            kv_cache_write(ctx, k, ref.v(), ref.slot_ids(), kc, vc);
          }
          Tensor q = got.q(), k = got.k(), kc = got.cache(got.kc), vc = got.cache(got.vc);
          const Tensor qn = got.norm(bf16_w, false), kn = got.norm(bf16_w, true);
          qk_norm_rope_kv_write(ctx, q, k, got.v(), with_norm ? &qn : nullptr,
                                with_norm ? &kn : nullptr, eps, got.positions(), got.cos_sin(),
                                interleaved, got.slot_ids(), kc, vc);
          EXPECT_TRUE(same_bits(got.qkv, ref.qkv)) << "q, k, v";
          EXPECT_TRUE(same_bits(got.kc, ref.kc)) << "k cache";
          EXPECT_TRUE(same_bits(got.vc, ref.vc)) << "v cache";
          // The comparison is not of two no-ops: q, k and the k cache did change.
          EXPECT_FALSE(same_bits(got.qkv, qkv0));
          EXPECT_FALSE(same_bits(got.kc, kc0));
        }
}

TEST(AttentionPrep, RejectsBadShapes) {
  ExecContext ctx;
  Prep p(3, 4, 2, 64, 7);
  Tensor q = p.q(), k = p.k(), kc = p.cache(p.kc), vc = p.cache(p.vc);
  const Tensor good = p.norm(false, false);
  const Tensor short_w = Tensor::view(p.qn.data(), DType::kF32, {p.Dh - 2});
  auto run = [&](const Tensor* qn, const Tensor& slots, const Tensor& cs) {
    qk_norm_rope_kv_write(ctx, q, k, p.v(), qn, &good, 1e-6f, p.positions(), cs, false, slots, kc,
                          vc);
  };
  EXPECT_THROW(run(&short_w, p.slot_ids(), p.cos_sin()), Error);
  const Tensor two_slots = Tensor::view(p.slots.data(), DType::kI32, {2});
  EXPECT_THROW(run(&good, two_slots, p.cos_sin()), Error);
  const Tensor narrow_cs = Tensor::view(p.cs.data(), DType::kF32, {p.P, p.Dh / 2});
  EXPECT_THROW(run(&good, p.slot_ids(), narrow_cs), Error);
  Tensor k_wrong = p.heads(p.Hq * p.Dh, 1);  // 1 kv head for a 2-head cache
  EXPECT_THROW(qk_norm_rope_kv_write(ctx, q, k_wrong, p.v(), nullptr, nullptr, 1e-6f, p.positions(),
                                     p.cos_sin(), false, p.slot_ids(), kc, vc),
               Error);
  EXPECT_NO_THROW(run(&good, p.slot_ids(), p.cos_sin()));
}
