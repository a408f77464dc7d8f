// qk_norm_rope_kv_write on CUDA: (a) the fused kernel gives the bits of the five CUDA ops it
// replaces (q/k rms_norm, rope of q and k, kv_cache_write) for head_dim 64, 128, 256 and the
// five-kernel fallback (512), with and without q/k norms, both rope layouts, aligned and
// unaligned rows, padding slots; (b) it matches the CPU reference within bf16 rounding, caches
// poisoned first; (c) a token's bits do not depend on the batch: row r alone (M = 1) equals row r
// of M = 37. The op has no batch-dependent mode (only the grid follows M), so there is no
// non-invariant variant for (c) to catch.
#include <algorithm>
#include <numeric>
#include <string>
#include <tuple>

#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

class AttentionPrepCuda : public ::testing::Test {
 protected:
  void SetUp() override { init_cuda_backend(0); }
};

constexpr float kEps = 1e-6f;
constexpr int64_t kPositions = 4096, kBlockSize = 16;

struct Case {
  int64_t M, Hq, Hkv, Dh;
  bool norm = true, interleaved = false;
  int64_t pad = 0;             // extra elements per qkv row: 1 misaligns the 16-byte loads
  bool padding_slots = false;  // some tokens get slot -1 (graph padding): no cache write
  DType norm_dtype = DType::kBF16;
};

std::string name(const Case& c) {
  return "Dh " + std::to_string(c.Dh) + " Hq " + std::to_string(c.Hq) + " Hkv " +
         std::to_string(c.Hkv) + (c.norm ? " norm" : " no-norm") +
         (c.interleaved ? " interleaved" : " half-split") + (c.pad ? " unaligned" : "") +
         (c.padding_slots ? " padding-slots" : "") + " " + std::string(dtype_name(c.norm_dtype)) +
         " weights";
}

// Host inputs of a case, all bf16-exact so the CPU and the GPU start from equal values.
struct Host {
  Case c;
  int64_t row = 0, blocks = 0;
  std::vector<float> qkv, qn, kn, cs;  // qkv [M, row]; qn, kn [Dh]; cs [kPositions, Dh]
  std::vector<int32_t> pos, slots;     // [M]
};

std::vector<float> rope_table(int64_t dh) {
  std::vector<float> cs(size_t(kPositions * dh));
  for (int64_t p = 0; p < kPositions; ++p)
    for (int64_t i = 0; i < dh / 2; ++i) {
      const double f = std::pow(1e6, -2.0 * double(i) / double(dh));
      cs[size_t(p * dh + i)] = float(std::cos(double(p) * f));
      cs[size_t(p * dh + dh / 2 + i)] = float(std::sin(double(p) * f));
    }
  return cs;
}

Host make_host(const Case& c, std::mt19937_64& rng) {
  Host h;
  h.c = c;
  h.row = (c.Hq + 2 * c.Hkv) * c.Dh + c.pad;
  h.blocks = (c.M + kBlockSize - 1) / kBlockSize + 3;
  h.qkv = random_floats(rng, size_t(c.M * h.row), -3, 3);
  h.qn = random_floats(rng, size_t(c.Dh), 0.5f, 1.5f);
  h.kn = random_floats(rng, size_t(c.Dh), 0.5f, 1.5f);
  round_bf16(h.qkv);
  round_bf16(h.qn);
  round_bf16(h.kn);
  h.cs = rope_table(c.Dh);
  h.pos.resize(size_t(c.M));
  for (auto& p : h.pos) p = int32_t(rng() % kPositions);
  std::vector<int32_t> all(size_t(h.blocks * kBlockSize));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  h.slots.assign(all.begin(), all.begin() + c.M);
  if (c.padding_slots)
    for (size_t i = 0; i < h.slots.size(); i += 5) h.slots[i] = -1;
  return h;
}

// Token r of h as a batch of one.
Host one_row(const Host& h, int64_t r) {
  Host o = h;
  o.c.M = 1;
  o.qkv.assign(h.qkv.begin() + r * h.row, h.qkv.begin() + (r + 1) * h.row);
  o.pos = {h.pos[size_t(r)]};
  o.slots = {h.slots[size_t(r)]};
  return o;
}

// q, k or v heads inside the fused qkv rows.
Tensor heads(void* base, DType dt, Device dev, const Host& h, int64_t col, int64_t n) {
  Tensor t =
      Tensor::view(static_cast<char*>(base) + col * dtype_size(dt), dt, {h.c.M, n, h.c.Dh}, dev);
  t.stride = {h.row, h.c.Dh, 1, 0};
  return t;
}

struct Dev {
  DeviceTensor qkv, kc, vc, qn, kn, cs, pos, slots;
  Tensor q, k, v;
};

Dev make_dev(const Host& h) {
  const Case& c = h.c;
  Dev d;
  d.qkv = upload(h.qkv, DType::kBF16, {c.M, h.row});
  d.kc = device_empty(DType::kBF16, {h.blocks, kBlockSize, c.Hkv, c.Dh});
  d.vc = device_empty(DType::kBF16, {h.blocks, kBlockSize, c.Hkv, c.Dh});
  poison(d.kc.t);
  poison(d.vc.t);
  d.qn = upload(h.qn, c.norm_dtype, {c.Dh});
  d.kn = upload(h.kn, c.norm_dtype, {c.Dh});
  d.cs = upload(h.cs, DType::kF32, {kPositions, c.Dh});
  d.pos = upload_i32(h.pos, {c.M});
  d.slots = upload_i32(h.slots, {c.M});
  d.q = heads(d.qkv.t.data, DType::kBF16, Device::kCuda, h, 0, c.Hq);
  d.k = heads(d.qkv.t.data, DType::kBF16, Device::kCuda, h, c.Hq * c.Dh, c.Hkv);
  d.v = heads(d.qkv.t.data, DType::kBF16, Device::kCuda, h, (c.Hq + c.Hkv) * c.Dh, c.Hkv);
  return d;
}

void run_fused(Dev& d, const Host& h) {
  ops::qk_norm_rope_kv_write(gpu_ctx(), d.q, d.k, d.v, h.c.norm ? &d.qn.t : nullptr,
                             h.c.norm ? &d.kn.t : nullptr, kEps, d.pos.t, d.cs.t, h.c.interleaved,
                             d.slots.t, d.kc.t, d.vc.t);
}

// The model's sequence before the fusion.
void run_five(Dev& d, const Host& h) {
  const ExecContext ctx = gpu_ctx();
  if (h.c.norm) {
    ops::cuda::rms_norm(ctx, d.q, d.qn.t, kEps, d.q);
    ops::cuda::rms_norm(ctx, d.k, d.kn.t, kEps, d.k);
  }
  ops::cuda::rope(ctx, d.q, d.pos.t, d.cs.t, h.c.interleaved);
  ops::cuda::rope(ctx, d.k, d.pos.t, d.cs.t, h.c.interleaved);
  ops::cuda::kv_cache_write(ctx, d.k, d.v, d.slots.t, d.kc.t, d.vc.t);
}

std::vector<Case> bitwise_cases() {
  std::vector<Case> cases;
  for (int64_t dh : {64, 128, 256, 512})
    for (bool norm : {true, false})
      for (bool inter : {false, true}) {
        Case c{37, dh <= 128 ? 12 : 6, 3, dh, norm, inter};
        c.padding_slots = true;
        cases.push_back(c);
      }
  Case unaligned{37, 12, 3, 128, true, false, 1, true};
  cases.push_back(unaligned);
  Case f32_weights{37, 32, 8, 128, true, false, 0, false, DType::kF32};
  cases.push_back(f32_weights);
  Case one_token{1, 32, 8, 128, true, true};  // decode of one sequence
  cases.push_back(one_token);
  return cases;
}

TEST_F(AttentionPrepCuda, FusedEqualsTheFiveKernelsBitForBit) {
  std::mt19937_64 rng(test_seed("qk_norm_rope_kv_write vs five kernels"));
  for (const Case& c : bitwise_cases()) {
    SCOPED_TRACE(name(c));
    const Host h = make_host(c, rng);
    Dev fused = make_dev(h), five = make_dev(h);
    run_fused(fused, h);
    run_five(five, h);
    EXPECT_TRUE(same_bytes(download_bytes(fused.qkv.t), download_bytes(five.qkv.t))) << "q, k, v";
    EXPECT_TRUE(same_bytes(download_bytes(fused.kc.t), download_bytes(five.kc.t))) << "k cache";
    EXPECT_TRUE(same_bytes(download_bytes(fused.vc.t), download_bytes(five.vc.t))) << "v cache";
  }
}

TEST_F(AttentionPrepCuda, MatchesCpuReference) {
  std::mt19937_64 rng(test_seed("qk_norm_rope_kv_write vs cpu"));
  for (int64_t dh : {64, 128})
    for (bool norm : {true, false})
      for (bool inter : {false, true}) {
        const Case c{29, 16, 4, dh, norm, inter};
        SCOPED_TRACE(name(c));
        const Host h = make_host(c, rng);
        Dev d = make_dev(h);
        run_fused(d, h);

        Host ref = h;  // the CPU reference, f32 throughout
        std::vector<float> kc(size_t(h.blocks * kBlockSize * c.Hkv * c.Dh)), vc(kc.size());
        Tensor q = heads(ref.qkv.data(), DType::kF32, Device::kCpu, h, 0, c.Hq);
        Tensor k = heads(ref.qkv.data(), DType::kF32, Device::kCpu, h, c.Hq * c.Dh, c.Hkv);
        Tensor v =
            heads(ref.qkv.data(), DType::kF32, Device::kCpu, h, (c.Hq + c.Hkv) * c.Dh, c.Hkv);
        Tensor hkc = Tensor::view(kc.data(), DType::kF32, {h.blocks, kBlockSize, c.Hkv, c.Dh});
        Tensor hvc = Tensor::view(vc.data(), DType::kF32, {h.blocks, kBlockSize, c.Hkv, c.Dh});
        const Tensor qn = Tensor::view(ref.qn.data(), DType::kF32, {c.Dh});
        const Tensor kn = Tensor::view(ref.kn.data(), DType::kF32, {c.Dh});
        ops::qk_norm_rope_kv_write(cpu_ctx(), q, k, v, norm ? &qn : nullptr, norm ? &kn : nullptr,
                                   kEps, Tensor::view(ref.pos.data(), DType::kI32, {c.M}),
                                   Tensor::view(ref.cs.data(), DType::kF32, {kPositions, c.Dh}),
                                   inter, Tensor::view(ref.slots.data(), DType::kI32, {c.M}), hkc,
                                   hvc);
        // Without norm the inputs are equal and only the output rounding differs (2^-8
        // relative). With it the GPU also rounds the normed q, k (|x| <= ~3) to bf16 before the
        // rotation, as the five kernels do: 2^-8 * 3 * (|cos| + |sin|) <= 0.017 absolute.
        const float atol = norm ? 3e-2f : 1e-4f, rtol = 8e-3f;
        expect_close(download(d.qkv.t), ref.qkv, atol, rtol, "q, k (v untouched)");
        // Written cache rows equal the rotated k and the v rows; every other entry keeps its
        // poison.
        const std::vector<float> gk = download(d.kc.t), gv = download(d.vc.t);
        const int64_t per_slot = c.Hkv * c.Dh;
        std::vector<float> gk_rows, gv_rows, want_k, want_v;
        for (int64_t m = 0; m < c.M; ++m) {
          const int64_t s = h.slots[size_t(m)];
          gk_rows.insert(gk_rows.end(), gk.begin() + s * per_slot, gk.begin() + (s + 1) * per_slot);
          gv_rows.insert(gv_rows.end(), gv.begin() + s * per_slot, gv.begin() + (s + 1) * per_slot);
          want_k.insert(want_k.end(), kc.begin() + s * per_slot, kc.begin() + (s + 1) * per_slot);
          want_v.insert(want_v.end(), vc.begin() + s * per_slot, vc.begin() + (s + 1) * per_slot);
        }
        expect_close(gk_rows, want_k, atol, rtol, "k cache");
        expect_close(gv_rows, want_v, 0, 0, "v cache");
        const auto written = [](const std::vector<float>& x) {
          return std::count_if(x.begin(), x.end(), [](float f) { return !std::isnan(f); });
        };
        EXPECT_EQ(written(gk), c.M * per_slot) << "k cache entries outside the slots were written";
        EXPECT_EQ(written(gv), c.M * per_slot) << "v cache entries outside the slots were written";
      }
}

TEST_F(AttentionPrepCuda, TokenIsIndependentOfTheBatch) {
  std::mt19937_64 rng(test_seed("qk_norm_rope_kv_write batch invariance"));
  for (int64_t dh : {64, 128})
    for (bool norm : {true, false}) {
      const Case c{37, 32, 8, dh, norm, dh == 64};
      SCOPED_TRACE(name(c));
      const Host all = make_host(c, rng);
      const int64_t r = int64_t(rng() % uint64_t(c.M));
      const Host one = one_row(all, r);
      Dev da = make_dev(all), d1 = make_dev(one);
      run_fused(da, all);
      run_fused(d1, one);
      EXPECT_TRUE(
          same_bytes(download_bytes(da.qkv.t.slice_rows(r, r + 1)), download_bytes(d1.qkv.t)))
          << "row " << r << " of q, k, v";
      const size_t slot_bytes = size_t(c.Hkv * c.Dh) * 2,
                   at = size_t(all.slots[size_t(r)]) * slot_bytes;
      for (auto [a, b, what] :
           {std::tuple{&da.kc, &d1.kc, "k cache"}, std::tuple{&da.vc, &d1.vc, "v cache"}}) {
        const auto ba = download_bytes(a->t), b1 = download_bytes(b->t);
        EXPECT_TRUE(same_bytes(std::vector<uint8_t>(ba.begin() + at, ba.begin() + at + slot_bytes),
                               std::vector<uint8_t>(b1.begin() + at, b1.begin() + at + slot_bytes)))
            << what << " at the slot of row " << r;
      }
    }
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
