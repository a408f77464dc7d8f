// CUDA ops (all but linear and attention) against the CPU reference, element by element within a
// tolerance stated per op, on fresh random inputs (seed printed), outputs poisoned first; plus
// row invariance: a row alone equals the same row inside a batch of 1000, bit for bit.
#include <algorithm>

#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override { init_cuda_backend(0); }
};

Tensor host(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::view(v.data(), DType::kF32, shape);
}

// bf16 output vs f32 reference: the output rounding alone is 2^-9 relative.
constexpr float kBf16Rtol = 8e-3f;

TEST_F(CudaOps, RmsNormMatchesCpu) {
  std::mt19937_64 rng(test_seed("rms_norm"));
  for (int64_t d : {128, 1024, 4096, 5000}) {
    const int64_t r = 37;
    auto x = random_floats(rng, r * d, -2, 2), w = random_floats(rng, d, 0.5f, 1.5f);
    round_bf16(x);
    round_bf16(w);
    std::vector<float> want(r * d);
    Tensor ho = host(want, {r, d});
    ops::rms_norm(cpu_ctx(), host(x, {r, d}), host(w, {d}), 1e-6f, ho);
    auto gx = upload(x, DType::kBF16, {r, d}), gw = upload(w, DType::kBF16, {d});
    auto go = device_empty(DType::kBF16, {r, d});
    poison(go.t);
    ops::cuda::rms_norm(gpu_ctx(), gx.t, gw.t, 1e-6f, go.t);
    expect_close(download(go.t), want, 1e-3f, kBf16Rtol, "rms_norm");
  }
}

TEST_F(CudaOps, RmsNormPerHeadStrided) {
  // qwen3 q-norm: x is the q part [M, H, 128] of a fused qkv row of width (H + 2 * 4) * 128.
  std::mt19937_64 rng(test_seed("rms_norm per head"));
  const int64_t m = 9, h = 16, dh = 128, row = (h + 8) * dh;
  auto qkv = random_floats(rng, m * row, -3, 3), w = random_floats(rng, dh, 0.5f, 1.5f);
  round_bf16(qkv);
  round_bf16(w);
  Tensor hq = host(qkv, {m, row});
  Tensor hx = Tensor::view(qkv.data(), DType::kF32, {m, h, dh});
  hx.stride = {row, dh, 1, 0};
  std::vector<float> want(m * h * dh);
  Tensor ho = host(want, {m, h, dh});
  ops::rms_norm(cpu_ctx(), hx, host(w, {dh}), 1e-6f, ho);
  auto gq = upload(qkv, DType::kBF16, {m, row}), gw = upload(w, DType::kF32, {dh});
  Tensor gx = Tensor::view(gq.t.data, DType::kBF16, {m, h, dh}, Device::kCuda);
  gx.stride = {row, dh, 1, 0};
  auto go = device_empty(DType::kBF16, {m, h, dh});
  poison(go.t);
  ops::cuda::rms_norm(gpu_ctx(), gx, gw.t, 1e-6f, go.t);
  expect_close(download(go.t), want, 1e-3f, kBf16Rtol, "rms_norm per head");
  (void)hq;
}

TEST_F(CudaOps, AddRmsNormMatchesCpu) {
  std::mt19937_64 rng(test_seed("add_rms_norm"));
  const int64_t r = 21, d = 2048;
  auto res = random_floats(rng, r * d, -4, 4), x = random_floats(rng, r * d, -1, 1),
       w = random_floats(rng, d, 0.5f, 1.5f);
  round_bf16(res);
  round_bf16(x);
  round_bf16(w);
  auto gres = upload(res, DType::kBF16, {r, d}), gx = upload(x, DType::kBF16, {r, d}),
       gw = upload(w, DType::kBF16, {d});
  std::vector<float> want(r * d);
  Tensor hres = host(res, {r, d}), ho = host(want, {r, d});
  ops::add_rms_norm(cpu_ctx(), hres, host(x, {r, d}), host(w, {d}), 1e-5f, ho);
  auto go = device_empty(DType::kBF16, {r, d});
  poison(go.t);
  ops::cuda::add_rms_norm(gpu_ctx(), gres.t, gx.t, gw.t, 1e-5f, go.t);
  // The residual is rounded to bf16 on the GPU (2^-9 relative), f32 on the CPU.
  expect_close(download(gres.t), res, 1e-6f, 4e-3f, "add_rms_norm residual");
  expect_close(download(go.t), want, 1e-3f, 1.2e-2f, "add_rms_norm out");
}

void rope_case(bool interleaved, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t m = 13, h = 8, dh = 128, row = 12 * dh, P = 4096;
  std::vector<float> cs(P * dh);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < dh / 2; ++i) {
      double f = std::pow(1e6, -2.0 * double(i) / double(dh));
      cs[p * dh + i] = float(std::cos(double(p) * f));
      cs[p * dh + dh / 2 + i] = float(std::sin(double(p) * f));
    }
  std::vector<int32_t> pos(m);
  for (auto& p : pos) p = int32_t(rng() % P);
  auto buf = random_floats(rng, m * row, -2, 2);
  round_bf16(buf);
  auto gbuf = upload(buf, DType::kBF16, {m, row});
  auto gcs = upload(cs, DType::kF32, {P, dh});
  auto gpos = upload_i32(pos, {m});
  // x = heads [2, 10) of each row: strided rows inside a wider buffer.
  Tensor hx = Tensor::view(buf.data() + 2 * dh, DType::kF32, {m, h, dh});
  hx.stride = {row, dh, 1, 0};
  Tensor gx =
      Tensor::view(gbuf.t.ptr<uint16_t>() + 2 * dh, DType::kBF16, {m, h, dh}, Device::kCuda);
  gx.stride = {row, dh, 1, 0};
  std::vector<float> want = buf;
  Tensor hw = Tensor::view(want.data() + 2 * dh, DType::kF32, {m, h, dh});
  hw.stride = hx.stride;
  ops::rope(cpu_ctx(), hw, Tensor::view(pos.data(), DType::kI32, {m}), host(cs, {P, dh}),
            interleaved);
  ops::cuda::rope(gpu_ctx(), gx, gpos.t, gcs.t, interleaved);
  // Untouched heads must stay bit-identical; rotated ones within bf16 rounding.
  expect_close(download(gbuf.t), want, 1e-2f, kBf16Rtol,
               interleaved ? "rope interleaved" : "rope half");
}

TEST_F(CudaOps, RopeInterleavedMatchesCpu) { rope_case(true, test_seed("rope interleaved")); }
TEST_F(CudaOps, RopeHalfSplitMatchesCpu) { rope_case(false, test_seed("rope half")); }

TEST_F(CudaOps, SiluMulMatchesCpu) {
  std::mt19937_64 rng(test_seed("silu_mul"));
  const int64_t m = 17, f = 3072;
  auto gu = random_floats(rng, m * 2 * f, -6, 6);
  round_bf16(gu);
  std::vector<float> want(m * f);
  Tensor ho = host(want, {m, f});
  ops::silu_mul(cpu_ctx(), host(gu, {m, 2 * f}), ho);
  auto ggu = upload(gu, DType::kBF16, {m, 2 * f});
  auto go = device_empty(DType::kBF16, {m, f});
  poison(go.t);
  ops::cuda::silu_mul(gpu_ctx(), ggu.t, go.t);
  expect_close(download(go.t), want, 1e-4f, kBf16Rtol, "silu_mul");
}

TEST_F(CudaOps, EmbeddingAndGatherRowsExact) {
  std::mt19937_64 rng(test_seed("embedding"));
  const int64_t v = 5000, d = 896, m = 29;
  auto table = random_floats(rng, v * d, -1, 1);
  std::vector<int32_t> ids(m);
  for (auto& i : ids) i = int32_t(rng() % v);
  auto gids = upload_i32(ids, {m});
  for (DType tt : {DType::kF32, DType::kBF16}) {
    auto gt = upload(table, tt, {v, d});
    auto go = device_empty(DType::kBF16, {m, d});
    poison(go.t);
    ops::cuda::embedding(gpu_ctx(), gt.t, gids.t, go.t);
    std::vector<float> want(m * d);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < d; ++c)
        want[r * d + c] = bf16_to_f32(f32_to_bf16(table[ids[r] * d + c]));
    expect_close(download(go.t), want, 0, 0, "embedding");
    auto gg = device_empty(DType::kBF16, {m, d});
    poison(gg.t);
    ops::cuda::gather_rows(gpu_ctx(), go.t, gids.t, gg.t);  // rows of the embedding output
    // ids[r] may exceed m: those rows must come back NaN (out of range), the rest exact.
    auto got2 = download(gg.t);
    for (int64_t r = 0; r < m; ++r) {
      bool in = ids[r] < m;
      for (int64_t c = 0; c < d; ++c) {
        float g = got2[r * d + c];
        if (in)
          ASSERT_EQ(g, want[ids[r] * d + c]) << "gather row " << r;
        else
          ASSERT_TRUE(std::isnan(g)) << "out-of-range gather row " << r;
      }
    }
  }
}

TEST_F(CudaOps, KvCacheWriteExact) {
  std::mt19937_64 rng(test_seed("kv_cache_write"));
  const int64_t m = 40, hkv = 8, dh = 128, blocks = 16, bs = 16, row = (32 + 16) * dh;
  auto qkv = random_floats(rng, m * row), kc = random_floats(rng, blocks * bs * hkv * dh),
       vc = random_floats(rng, blocks * bs * hkv * dh);
  round_bf16(qkv);
  round_bf16(kc);
  round_bf16(vc);
  std::vector<int32_t> slots(m);
  std::vector<int32_t> perm(blocks * bs);
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t i = 0; i < m; ++i) slots[i] = perm[i];
  auto gqkv = upload(qkv, DType::kBF16, {m, row});
  auto gkc = upload(kc, DType::kBF16, {blocks, bs, hkv, dh}),
       gvc = upload(vc, DType::kBF16, {blocks, bs, hkv, dh});
  auto gslots = upload_i32(slots, {m});
  auto view = [&](void* base, DType dt, Device dev, int64_t col) {
    Tensor t = Tensor::view(static_cast<char*>(base) + col * dtype_size(dt), dt, {m, hkv, dh}, dev);
    t.stride = {row, dh, 1, 0};
    return t;
  };
  Tensor hk = view(qkv.data(), DType::kF32, Device::kCpu, 32 * dh),
         hv = view(qkv.data(), DType::kF32, Device::kCpu, 40 * dh);
  Tensor hkc = host(kc, {blocks, bs, hkv, dh}), hvc = host(vc, {blocks, bs, hkv, dh});
  ops::kv_cache_write(cpu_ctx(), hk, hv, Tensor::view(slots.data(), DType::kI32, {m}), hkc, hvc);
  ops::cuda::kv_cache_write(gpu_ctx(), view(gqkv.t.data, DType::kBF16, Device::kCuda, 32 * dh),
                            view(gqkv.t.data, DType::kBF16, Device::kCuda, 40 * dh), gslots.t,
                            gkc.t, gvc.t);
  expect_close(download(gkc.t), kc, 0, 0, "k cache");
  expect_close(download(gvc.t), vc, 0, 0, "v cache");
}

TEST_F(CudaOps, LogSoftmaxMatchesCpu) {
  std::mt19937_64 rng(test_seed("log_softmax"));
  const int64_t r = 5, v = 151936;
  auto x = random_floats(rng, r * v, -20, 20);
  round_bf16(x);
  std::vector<float> want(r * v);
  Tensor ho = host(want, {r, v});
  ops::log_softmax(cpu_ctx(), host(x, {r, v}), ho);
  for (DType dt : {DType::kBF16, DType::kF32}) {
    auto gx = upload(x, dt, {r, v});
    auto go = device_empty(DType::kF32, {r, v});
    poison(go.t);
    ops::cuda::log_softmax(gpu_ctx(), gx.t, go.t);
    // f32 throughout; only the order of the exp sum differs: |err| ~ 1e-6 * |lse|.
    expect_close(download(go.t), want, 1e-4f, 1e-6f, "log_softmax");
  }
}

TEST_F(CudaOps, CopyRoundsToNearestEven) {
  std::mt19937_64 rng(test_seed("copy"));
  std::vector<float> x = random_floats(rng, 4099, -1e3f, 1e3f);
  // Exact ties and near-ties: bf16 keeps the top 16 bits.
  for (int i = 0; i < 64; ++i) x[i] = bits_to_f32(0x3f800000u + 0x8000u + uint32_t(i) * 0x10000u);
  for (int i = 64; i < 128; ++i) x[i] = bits_to_f32(0x40000000u + 0x7fffu + uint32_t(i) * 0x10000u);
  auto g = upload(x, DType::kBF16, {int64_t(x.size())});
  auto bytes = download_bytes(g.t);
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, bytes.data() + 2 * i, 2);
    ASSERT_EQ(got, f32_to_bf16(x[i])) << "element " << i;
  }
  // device bf16 -> device f32 -> host, and device f32 -> device bf16 (strided rows).
  auto f = device_empty(DType::kF32, {int64_t(x.size())});
  ops::cuda::copy(gpu_ctx(), g.t, f.t);
  auto back = download(f.t);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], bf16_to_f32(f32_to_bf16(x[i])));
  auto f2 = upload(x, DType::kF32, {int64_t(x.size())});
  auto wide = device_empty(DType::kBF16, {4, 2000});
  poison(wide.t);
  Tensor src = f2.t.slice_rows(0, 4000).reshape({4, 1000});
  Tensor dst = wide.t;
  dst.shape[1] = 1000;  // left half of each 2000-wide row
  ops::cuda::copy(gpu_ctx(), src, dst);
  auto w = download(wide.t);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 1000; ++c)
      ASSERT_EQ(w[r * 2000 + c], bf16_to_f32(f32_to_bf16(x[r * 1000 + c])));
}

// Dummy weights: the GPU fill must equal the CPU fill bit for bit (f32) and after rounding (bf16).
TEST_F(CudaOps, FillUniformMatchesCpu) {
  const uint64_t seed = test_seed("fill_uniform");
  const int64_t n = 100003;
  std::vector<float> want(n);
  Tensor hw = host(want, {n});
  ops::fill_uniform(cpu_ctx(), hw, seed, 0.02f, 0.5f);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    auto g = device_empty(dt, {n});
    poison(g.t);
    ops::cuda::fill_uniform(gpu_ctx(), g.t, seed, 0.02f, 0.5f);
    auto got = download(g.t);
    size_t bad = 0;
    for (int64_t i = 0; i < n; ++i)
      bad += got[i] != (dt == DType::kF32 ? want[i] : bf16_to_f32(f32_to_bf16(want[i])));
    EXPECT_EQ(bad, 0u) << "fill_uniform " << dtype_name(dt);
  }
}

// bf16 rows on 16-byte boundaries take rms_norm_vec_kernel (registers, vector loads); rows that
// are not fall back to rms_norm_kernel. Both must give the same bits: the same rows, once
// aligned and once at an odd element offset of a wider buffer, for norm and residual-add norm,
// at the row lengths of q/k heads and of 0.6B / 8B / 30B hidden states.
TEST_F(CudaOps, RmsNormVectorPathEqualsScalarPath) {
  std::mt19937_64 rng(test_seed("rms_norm paths"));
  for (int64_t d : {128, 1024, 2048, 4096, 8192}) {
    const int64_t r = 9, ld = d + 1;  // odd stride and offset 1: no row is 16-byte aligned
    auto x = random_floats(rng, r * d, -3, 3), res = random_floats(rng, r * d, -3, 3),
         w = random_floats(rng, d, 0.5f, 1.5f);
    std::vector<float> xw(r * ld, 0.f), resw(r * ld, 0.f);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < d; ++j) {
        xw[i * ld + 1 + j] = x[i * d + j];
        resw[i * ld + 1 + j] = res[i * d + j];
      }
    auto gw = upload(w, DType::kBF16, {d});
    auto gx = upload(x, DType::kBF16, {r, d}), gxw = upload(xw, DType::kBF16, {r, ld});
    auto gres = upload(res, DType::kBF16, {r, d}), gresw = upload(resw, DType::kBF16, {r, ld});
    auto odd = [&](const Tensor& wide) {  // [r, d] view starting at element 1 of each wide row
      Tensor t = wide;
      t.data = static_cast<char*>(wide.data) + 2;
      t.shape[1] = d;
      return t;
    };
    Tensor xo = odd(gxw.t), reso = odd(gresw.t);
    ASSERT_NE(reinterpret_cast<uintptr_t>(xo.data) % 16, 0u);
    auto o1 = device_empty(DType::kBF16, {r, d}), o2 = device_empty(DType::kBF16, {r, d});
    poison(o1.t);
    poison(o2.t);
    ops::cuda::rms_norm(gpu_ctx(), gx.t, gw.t, 1e-6f, o1.t);
    ops::cuda::rms_norm(gpu_ctx(), xo, gw.t, 1e-6f, o2.t);
    EXPECT_TRUE(same_bytes(download_bytes(o1.t), download_bytes(o2.t))) << "rms_norm d=" << d;
    poison(o1.t);
    poison(o2.t);
    ops::cuda::add_rms_norm(gpu_ctx(), gres.t, gx.t, gw.t, 1e-6f, o1.t);
    ops::cuda::add_rms_norm(gpu_ctx(), reso, xo, gw.t, 1e-6f, o2.t);
    EXPECT_TRUE(same_bytes(download_bytes(o1.t), download_bytes(o2.t))) << "add_rms_norm d=" << d;
    std::vector<uint8_t> wide = download_bytes(gresw.t), packed;
    for (int64_t i = 0; i < r; ++i)
      packed.insert(packed.end(), wide.begin() + (i * ld + 1) * 2, wide.begin() + (i * ld + 1 + d) * 2);
    EXPECT_TRUE(same_bytes(download_bytes(gres.t), packed)) << "residual d=" << d;
  }
}

// Row invariance: row `k` computed alone equals row `k` of a 1000-row batch, bit for bit.
TEST_F(CudaOps, RowOpsAreBatchInvariant) {
  std::mt19937_64 rng(test_seed("row invariance"));
  const int64_t n = 1000, d = 4096, v = 32768;
  const int64_t k = int64_t(rng() % n);
  auto x = random_floats(rng, n * d, -3, 3), res = random_floats(rng, n * d, -3, 3),
       w = random_floats(rng, d, 0.5f, 1.5f), lg = random_floats(rng, n * v, -30, 30);
  auto gx = upload(x, DType::kBF16, {n, d}), gw = upload(w, DType::kBF16, {d});
  auto gl = upload(lg, DType::kBF16, {n, v});
  auto all = device_empty(DType::kBF16, {n, d}), one = device_empty(DType::kBF16, {1, d});
  ops::cuda::rms_norm(gpu_ctx(), gx.t, gw.t, 1e-6f, all.t);
  ops::cuda::rms_norm(gpu_ctx(), gx.t.slice_rows(k, k + 1), gw.t, 1e-6f, one.t);
  EXPECT_TRUE(same_bytes(download_bytes(all.t.slice_rows(k, k + 1)), download_bytes(one.t)))
      << "rms_norm";

  auto ra = upload(res, DType::kBF16, {n, d}),
       r1 = upload(std::vector<float>(res.begin() + k * d, res.begin() + (k + 1) * d), DType::kBF16,
                   {1, d});
  ops::cuda::add_rms_norm(gpu_ctx(), ra.t, gx.t, gw.t, 1e-6f, all.t);
  ops::cuda::add_rms_norm(gpu_ctx(), r1.t, gx.t.slice_rows(k, k + 1), gw.t, 1e-6f, one.t);
  EXPECT_TRUE(same_bytes(download_bytes(all.t.slice_rows(k, k + 1)), download_bytes(one.t)))
      << "add_rms_norm out";
  EXPECT_TRUE(same_bytes(download_bytes(ra.t.slice_rows(k, k + 1)), download_bytes(r1.t)))
      << "add_rms_norm residual";

  auto la = device_empty(DType::kF32, {n, v}), l1 = device_empty(DType::kF32, {1, v});
  ops::cuda::log_softmax(gpu_ctx(), gl.t, la.t);
  ops::cuda::log_softmax(gpu_ctx(), gl.t.slice_rows(k, k + 1), l1.t);
  EXPECT_TRUE(same_bytes(download_bytes(la.t.slice_rows(k, k + 1)), download_bytes(l1.t)))
      << "log_softmax";
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
