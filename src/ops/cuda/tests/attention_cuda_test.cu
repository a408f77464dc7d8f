// CUDA attention: against the CPU reference (tolerance), then bit for bit across batching: a
// sequence alone == inside a batch of 64 mixed-length sequences, prefill == decode (one token at a
// time after writing its KV), prefill chunks of 1/7/64/512 tokens, split grid == fused grid ==
// wgmma prefill grid ==
// every decode-grid variant (ring depth, cp.async / TMA) in every shape (warp-chunk, CTA-chunk)
// == the tile4 grid (4 warps per sub-tile),
// CUDA graph replay == eager; and in non-invariant mode the same comparisons must find a
// difference.
#include <algorithm>
#include <numeric>
#include <utility>

#include "ops/cuda/attention_control.cuh"
#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {
namespace {

using Bytes = std::vector<uint8_t>;

// Random bf16 values in [-1, 1), as host floats already rounded to bf16.
std::vector<float> random_bf16(uint64_t& state, size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    x = bf16_to_f32(f32_to_bf16(float(int64_t(state >> 40) - (int64_t(1) << 23)) / float(1 << 23)));
  }
  return v;
}

// Sequences with paged KV: every position of every sequence has its K/V and q rows ready on the
// host and the device; caches hold all positions (unused slots NaN) unless a test writes them.
struct World {
  int64_t hq, hkv, dh, bs, nseq, max_blocks, num_blocks;
  std::vector<int64_t> len, first;  // tokens of sequence s: rows [first[s], first[s] + len[s])
  int64_t total = 0;
  std::vector<int32_t> table;  // [nseq, max_blocks]
  std::vector<float> q, k, v;  // [total, hq|hkv, dh]
  std::vector<float> kc, vc;   // [num_blocks, bs, hkv, dh] (NaN where unused)
  DeviceTensor gq, gk, gv, gkc, gvc, gtable;

  World(uint64_t seed, std::vector<int64_t> lengths, int64_t hq_, int64_t hkv_, int64_t dh_,
        int64_t bs_)
      : hq(hq_),
        hkv(hkv_),
        dh(dh_),
        bs(bs_),
        nseq(int64_t(lengths.size())),
        len(std::move(lengths)) {
    uint64_t st = seed | 1;
    for (int64_t l : len) {
      first.push_back(total);
      total += l;
    }
    max_blocks = (*std::max_element(len.begin(), len.end()) + bs - 1) / bs;
    int64_t need = 0;
    for (int64_t l : len) need += (l + bs - 1) / bs;
    num_blocks = need + 7;
    std::vector<int32_t> phys(static_cast<size_t>(num_blocks));
    std::iota(phys.begin(), phys.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(phys.begin(), phys.end(), rng);  // sequences own scattered physical blocks
    table.assign(size_t(nseq * max_blocks), 0);
    size_t next = 0;
    for (int64_t s = 0; s < nseq; ++s)
      for (int64_t b = 0; b < (len[s] + bs - 1) / bs; ++b) table[s * max_blocks + b] = phys[next++];
    q = random_bf16(st, size_t(total * hq * dh));
    k = random_bf16(st, size_t(total * hkv * dh));
    v = random_bf16(st, size_t(total * hkv * dh));
    kc.assign(size_t(num_blocks * bs * hkv * dh), NAN);
    vc = kc;
    for (int64_t s = 0; s < nseq; ++s)
      for (int64_t p = 0; p < len[s]; ++p) {
        int64_t slot = table[s * max_blocks + p / bs] * bs + p % bs;
        std::copy_n(&k[(first[s] + p) * hkv * dh], hkv * dh, &kc[slot * hkv * dh]);
        std::copy_n(&v[(first[s] + p) * hkv * dh], hkv * dh, &vc[slot * hkv * dh]);
      }
    gq = upload(q, DType::kBF16, {total, hq, dh});
    gk = upload(k, DType::kBF16, {total, hkv, dh});
    gv = upload(v, DType::kBF16, {total, hkv, dh});
    gkc = upload(kc, DType::kBF16, {num_blocks, bs, hkv, dh});
    gvc = upload(vc, DType::kBF16, {num_blocks, bs, hkv, dh});
    gtable = upload_i32(table, {nseq, max_blocks});
  }
  int32_t slot(int64_t s, int64_t p) const {
    return table[s * max_blocks + p / bs] * int32_t(bs) + int32_t(p % bs);
  }
};

// One query token: the global row of q, its sequence and its position.
struct Tok {
  int64_t row;
  int32_t seq, pos;
};

// Runs attention for `toks` on the given caches; returns the output bytes [M, hq, dh].
Bytes run(const World& w, const std::vector<Tok>& toks, const Tensor& kc, const Tensor& vc,
          bool invariant = true, cudaStream_t stream = nullptr) {
  const int64_t m = int64_t(toks.size());
  std::vector<int32_t> seq, pos;
  std::vector<float> qs;
  int max_pos = 0;
  for (const Tok& t : toks) {
    seq.push_back(t.seq);
    pos.push_back(t.pos);
    max_pos = std::max(max_pos, t.pos + 1);
  }
  auto gseq = upload_i32(seq, {m}), gpos = upload_i32(pos, {m});
  // Gather the q rows on the device (gather_rows is exact), so the inputs are identical bits.
  std::vector<int32_t> rows;
  for (const Tok& t : toks) rows.push_back(int32_t(t.row));
  auto grows = upload_i32(rows, {m});
  auto q = device_empty(DType::kBF16, {m, w.hq, w.dh});
  Tensor q2 = q.t.reshape({m, w.hq * w.dh});
  ops::cuda::gather_rows(gpu_ctx(), w.gq.t.reshape({w.total, w.hq * w.dh}), grows.t, q2);
  auto out = device_empty(DType::kBF16, {m, w.hq, w.dh});
  poison(out.t);
  AttentionMeta meta{gseq.t, gpos.t, w.gtable.t, int(w.bs), max_pos};
  BITEXACT_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // gather + poison ran on the legacy stream
  ops::cuda::attention(gpu_ctx(stream, invariant), q.t, kc, vc, meta, 1.0f / std::sqrt(float(w.dh)),
                       out.t);
  return download_bytes(out.t);
}

Bytes rows_of(const Bytes& all, int64_t first, int64_t count, int64_t row_bytes) {
  return Bytes(all.begin() + first * row_bytes, all.begin() + (first + count) * row_bytes);
}

std::vector<Tok> seq_tokens(const World& w, int64_t s, int64_t p0, int64_t p1) {
  std::vector<Tok> t;
  for (int64_t p = p0; p < p1; ++p) t.push_back({w.first[s] + p, int32_t(s), int32_t(p)});
  return t;
}

// Every token of every sequence, sequence by sequence (a whole prefill of the world).
std::vector<Tok> world_tokens(const World& w) {
  std::vector<Tok> toks;
  for (int64_t s = 0; s < w.nseq; ++s) {
    auto t = seq_tokens(w, s, 0, w.len[s]);
    toks.insert(toks.end(), t.begin(), t.end());
  }
  return toks;
}

class CudaAttention : public ::testing::Test {
 protected:
  void SetUp() override {
    init_cuda_backend(0);
    reset();
  }
  void TearDown() override { reset(); }
  static void reset() {
    set_attention_path(AttentionPath::kAuto);
    set_attention_streaming(true);
    set_attention_fused_config(0);
    set_attention_wgmma_flat_merge(false);
    set_attention_decode(kDecodeAuto);
  }
};

void check_vs_cpu(int64_t hq, int64_t hkv, int64_t dh, int64_t bs, AttentionPath path) {
  const uint64_t seed = test_seed("attention vs cpu");
  World w(seed, {1, 37, 256, 257, 700}, hq, hkv, dh, bs);
  const std::vector<Tok> toks = world_tokens(w);
  set_attention_path(path);
  Bytes got = run(w, toks, w.gkc.t, w.gvc.t);
  // CPU reference on the same (bf16-valued) inputs in f32.
  std::vector<int32_t> seq, pos;
  for (const Tok& t : toks) seq.push_back(t.seq), pos.push_back(t.pos);
  std::vector<float> out(size_t(w.total * hq * dh));
  AttentionMeta meta{Tensor::view(seq.data(), DType::kI32, {w.total}),
                     Tensor::view(pos.data(), DType::kI32, {w.total}),
                     Tensor::view(w.table.data(), DType::kI32, {w.nseq, w.max_blocks}), int(bs),
                     int(*std::max_element(w.len.begin(), w.len.end()))};
  Tensor o = Tensor::view(out.data(), DType::kF32, {w.total, hq, dh});
  ops::attention(
      cpu_ctx(), Tensor::view(const_cast<float*>(w.q.data()), DType::kF32, {w.total, hq, dh}),
      Tensor::view(const_cast<float*>(w.kc.data()), DType::kF32, {w.num_blocks, bs, hkv, dh}),
      Tensor::view(const_cast<float*>(w.vc.data()), DType::kF32, {w.num_blocks, bs, hkv, dh}), meta,
      1.0f / std::sqrt(float(dh)), o);
  std::vector<float> g(out.size());
  for (size_t i = 0; i < g.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, got.data() + 2 * i, 2);
    g[i] = bf16_to_f32(h);
  }
  // P is rounded to bf16 before P.V (2^-9 relative per weight) and the output to bf16.
  expect_close(g, out, 2e-3f, 1.6e-2f, "attention vs cpu");
}

TEST_F(CudaAttention, MatchesCpuSplitD128Block16) {
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kSplit);
}
TEST_F(CudaAttention, MatchesCpuFusedD128Block16) {
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kFused);
}
TEST_F(CudaAttention, MatchesCpuWgmmaD128Block16) {
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kWgmma);
}
TEST_F(CudaAttention, MatchesCpuWgmmaD64Block32) {
  check_vs_cpu(16, 8, 64, 32, AttentionPath::kWgmma);
}
TEST_F(CudaAttention, MatchesCpuWgmmaD64Block32G1) {
  check_vs_cpu(8, 8, 64, 32, AttentionPath::kWgmma);
}
TEST_F(CudaAttention, MatchesCpuSplitD64Block32) {
  check_vs_cpu(16, 8, 64, 32, AttentionPath::kSplit);
}
TEST_F(CudaAttention, MatchesCpuFusedD64Block32G1) {
  check_vs_cpu(8, 8, 64, 32, AttentionPath::kFused);
}
TEST_F(CudaAttention, MatchesCpuFused4WarpsD128) {
  set_attention_fused_config(1);
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kFused);
}
TEST_F(CudaAttention, MatchesCpuLegacyStreamD128) {
  set_attention_decode(kDecodeLegacy);
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kSplit);
}
TEST_F(CudaAttention, MatchesCpuTile4D128) {
  set_attention_decode(kDecodeTile4);
  check_vs_cpu(32, 8, 128, 16, AttentionPath::kSplit);
}
// Decode-grid shapes the tests force (spw, cpc, fold, tail): automatic; warp-chunk with 1, 2
// and 4 chunks per warp, with no tail, and with the last 1 and 3 chunks of every token in
// one-chunk CTA-chunk CTAs at the end of the grid (a 1300-token sequence has 6 chunks, so both
// parts are non-empty); CTA-chunk with 1, 2 and 4 chunks per CTA; the fold by the last CTA (1)
// or by merge_chunks_kernel (2).
struct DecodeShape {
  int spw, cpc, fold, tail;
};
constexpr DecodeShape kDecodeShapes[] = {{0, 0, 0, -1}, {4, 0, 1, 0}, {4, 0, 2, 1},  {8, 0, 1, 0},
                                         {16, 0, 2, 0}, {8, 0, 2, 3}, {0, 1, 1, -1}, {0, 1, 2, -1},
                                         {0, 2, 1, -1}, {0, 4, 2, -1}};

// The decode grid on its own (forced with the split path, so prefill tokens take it too): every
// variant in every shape gives the fused grid's bits, for head_dim 64 and 128, groups 1 to
// 16 and KV blocks of 8 to 64 keys (a 16-key piece may span two blocks). The fused grid matches
// the CPU reference above.
TEST_F(CudaAttention, DecodeVariantsGiveFusedBits) {
  struct Case {
    int64_t hq, hkv, dh, bs;
  };
  const Case cases[] = {{32, 8, 128, 16}, {16, 8, 64, 32}, {16, 1, 128, 8}, {8, 8, 64, 64}};
  const uint64_t seed = test_seed("attention decode variants");
  for (const Case& c : cases) {
    World w(seed, {1, 37, 64, 65, 256, 257, 700, 1300}, c.hq, c.hkv, c.dh, c.bs);
    const std::vector<Tok> toks = world_tokens(w);
    set_attention_path(AttentionPath::kFused);
    const Bytes ref = run(w, toks, w.gkc.t, w.gvc.t);
    set_attention_path(AttentionPath::kWgmma);
    EXPECT_TRUE(same_bytes(run(w, toks, w.gkc.t, w.gvc.t), ref))
        << "wgmma prefill grid, hq " << c.hq << " hkv " << c.hkv << " dh " << c.dh << " bs "
        << c.bs;
    set_attention_path(AttentionPath::kSplit);
    for (int v = 0; v < attention_decode_variants(); ++v)
      for (auto [spw, cpc, fold, tail] : kDecodeShapes) {
        set_attention_decode(v, spw, cpc, fold, tail);
        EXPECT_TRUE(same_bytes(run(w, toks, w.gkc.t, w.gvc.t), ref))
            << "variant " << v << " spw " << spw << " cpc " << cpc << " fold " << fold << " tail "
            << tail << " hq " << c.hq << " hkv " << c.hkv << " dh " << c.dh << " bs " << c.bs;
      }
    set_attention_decode(kDecodeLegacy);
    EXPECT_TRUE(same_bytes(run(w, toks, w.gkc.t, w.gvc.t), ref)) << "legacy, hq " << c.hq;
    set_attention_decode(kDecodeTile4);
    EXPECT_TRUE(same_bytes(run(w, toks, w.gkc.t, w.gvc.t), ref))
        << "tile4, hq " << c.hq << " hkv " << c.hkv << " dh " << c.dh << " bs " << c.bs;
    reset();
  }
}

// Scores spread wide (q scaled by 16, 64, 256: exact in bf16), so that sub-tiles have exponents
// s - max both above and below -126 (where exp2f takes its scaled path, with denormal results) and
// row maxima far from the other scores: the wgmma grid (tree row max) must still give the fused
// grid's bits. The host counts (row, sub-tile) pairs on either side of -126 to show that both
// cases occur.
TEST_F(CudaAttention, WgmmaWideScoresGiveFusedBits) {
  const uint64_t seed = test_seed("attention wgmma wide scores");
  for (float factor : {16.0f, 64.0f, 256.0f}) {
    World w(seed, {1, 64, 200, 700, 1300}, 32, 8, 128, 16);
    for (float& x : w.q) x *= factor;
    w.gq = upload(w.q, DType::kBF16, {w.total, w.hq, w.dh});
    // Rows x full sub-tiles whose smallest exponent is below -126, and those not (host, f64).
    const double scale_log2 = 1.4426950408889634 / std::sqrt(double(w.dh));
    constexpr int64_t kSub = 64;  // keys per sub-tile
    int64_t below = 0, above = 0;
    for (int64_t s = 0; s < w.nseq; ++s)
      for (int64_t p = 0; p < w.len[s]; p += 37)
        for (int64_t key0 = 0; key0 + kSub <= p + 1; key0 += kSub) {
          double mx = -1e300, mn = 1e300;
          for (int64_t k = key0; k < key0 + kSub; ++k) {
            double d = 0;
            for (int64_t i = 0; i < w.dh; ++i)
              d += double(w.q[((w.first[s] + p) * w.hq) * w.dh + i]) *
                   double(w.k[((w.first[s] + k) * w.hkv) * w.dh + i]);
            mx = std::max(mx, d * scale_log2), mn = std::min(mn, d * scale_log2);
          }
          (mn - mx < -126.0 ? below : above) += 1;
        }
    std::printf("factor %.0f: %lld (row, sub-tile) pairs with an exponent below -126, %lld not\n",
                factor, (long long)below, (long long)above);
    if (factor == 64.0f) {
      EXPECT_GT(below, 0);
      EXPECT_GT(above, 0);
    }
    const std::vector<Tok> toks = world_tokens(w);
    set_attention_path(AttentionPath::kFused);
    const Bytes ref = run(w, toks, w.gkc.t, w.gvc.t);
    set_attention_path(AttentionPath::kWgmma);
    EXPECT_TRUE(same_bytes(run(w, toks, w.gkc.t, w.gvc.t), ref)) << "wgmma grid, q x " << factor;
    reset();
  }
}

// 64 sequences of mixed lengths (a few long ones across many chunks).
std::vector<int64_t> mixed_lengths(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> l;
  for (int i = 0; i < 60; ++i) l.push_back(1 + int64_t(rng() % 700));
  for (int64_t x : {255, 256, 1300, 2600}) l.push_back(x);
  std::shuffle(l.begin(), l.end(), rng);
  return l;
}

struct Bitwise {
  World w;
  std::vector<Bytes> alone;  // per sequence: all its tokens, prefilled alone
  int64_t row_bytes;
  explicit Bitwise(uint64_t seed) : w(seed, mixed_lengths(seed), 32, 8, 128, 16) {
    row_bytes = w.hq * w.dh * 2;
    for (int64_t s = 0; s < w.nseq; ++s)
      alone.push_back(run(w, seq_tokens(w, s, 0, w.len[s]), w.gkc.t, w.gvc.t));
  }
  std::vector<Tok> all_tokens() const { return world_tokens(w); }
  std::vector<Tok> last_tokens() const {
    std::vector<Tok> t;
    for (int64_t s = 0; s < w.nseq; ++s)
      t.push_back({w.first[s] + w.len[s] - 1, int32_t(s), int32_t(w.len[s] - 1)});
    return t;
  }
  // Chunked prefill of sequence s into fresh poisoned caches, writing each chunk's KV first
  // (chunk = 1 is decode). Returns all L output rows.
  Bytes chunked(int64_t s, int64_t chunk, bool invariant = true) {
    auto kc = device_empty(DType::kBF16, {w.num_blocks, w.bs, w.hkv, w.dh});
    auto vc = device_empty(DType::kBF16, {w.num_blocks, w.bs, w.hkv, w.dh});
    poison(kc.t);
    poison(vc.t);
    Bytes out;
    for (int64_t p0 = 0; p0 < w.len[s]; p0 += chunk) {
      const int64_t p1 = std::min(w.len[s], p0 + chunk), m = p1 - p0;
      std::vector<int32_t> slots;
      for (int64_t p = p0; p < p1; ++p) slots.push_back(w.slot(s, p));
      auto gslots = upload_i32(slots, {m});
      const int64_t r0 = w.first[s] + p0;
      ops::cuda::kv_cache_write(gpu_ctx(), w.gk.t.slice_rows(r0, r0 + m),
                                w.gv.t.slice_rows(r0, r0 + m), gslots.t, kc.t, vc.t);
      Bytes o = run(w, seq_tokens(w, s, p0, p1), kc.t, vc.t, invariant);
      out.insert(out.end(), o.begin(), o.end());
    }
    return out;
  }
};

TEST_F(CudaAttention, BitwiseAcrossBatchingChunkingAndGrids) {
  Bitwise b(test_seed("attention bitwise"));
  World& w = b.w;
  // Grids: auto; the legacy split family (chunks streamed per CTA, one chunk per CTA); the three
  // fused configurations; every decode variant in every shape.
  struct Grid {
    AttentionPath path;
    bool streaming;
    int fused_config;
    int decode, spw, cpc, fold, tail;
  };
  std::vector<Grid> grids = {{AttentionPath::kAuto, true, 0, kDecodeAuto, 0, 0, 0, -1},
                             {AttentionPath::kSplit, true, 0, kDecodeLegacy, 0, 0, 0, -1},
                             {AttentionPath::kSplit, false, 0, kDecodeLegacy, 0, 0, 0, -1},
                             {AttentionPath::kSplit, true, 0, kDecodeTile4, 0, 0, 0, -1},
                             {AttentionPath::kFused, true, 0, kDecodeAuto, 0, 0, 0, -1},
                             {AttentionPath::kFused, true, 1, kDecodeAuto, 0, 0, 0, -1},
                             {AttentionPath::kFused, true, 2, kDecodeAuto, 0, 0, 0, -1},
                             {AttentionPath::kWgmma, true, 0, kDecodeAuto, 0, 0, 0, -1}};
  for (int v = 0; v < attention_decode_variants(); ++v)
    for (auto [spw, cpc, fold, tail] : kDecodeShapes)
      grids.push_back({AttentionPath::kSplit, true, 0, v, spw, cpc, fold, tail});
  for (const Grid& grid : grids) {
    set_attention_path(grid.path);
    set_attention_streaming(grid.streaming);
    set_attention_fused_config(grid.fused_config);
    set_attention_decode(grid.decode, grid.spw, grid.cpc, grid.fold, grid.tail);
    const int pi = int(&grid - grids.data());
    // Prefill of all 64 sequences at once.
    Bytes all = run(w, b.all_tokens(), w.gkc.t, w.gvc.t);
    for (int64_t s = 0; s < w.nseq; ++s)
      ASSERT_TRUE(same_bytes(rows_of(all, w.first[s], w.len[s], b.row_bytes), b.alone[s]))
          << "batch prefill, seq " << s << " grid " << pi;
    // Decode step of the 64 sequences (each one's last token).
    Bytes dec = run(w, b.last_tokens(), w.gkc.t, w.gvc.t);
    for (int64_t s = 0; s < w.nseq; ++s)
      ASSERT_TRUE(same_bytes(rows_of(dec, s, 1, b.row_bytes),
                             rows_of(b.alone[s], w.len[s] - 1, 1, b.row_bytes)))
          << "batch decode, seq " << s << " grid " << pi;
  }
  reset();
  // Decode one token at a time, and prefill in chunks, on the longest sequences.
  const int64_t s_long = std::max_element(w.len.begin(), w.len.end()) - w.len.begin();
  int64_t s_mid = -1;
  for (int64_t s = 0; s < w.nseq; ++s)
    if (w.len[s] == 1300) s_mid = s;
  ASSERT_GE(s_mid, 0);
  for (int64_t chunk : {1, 7, 64, 512}) {
    EXPECT_TRUE(same_bytes(b.chunked(s_mid, chunk), b.alone[s_mid]))
        << "chunked prefill, chunk " << chunk;
  }
  EXPECT_TRUE(same_bytes(b.chunked(s_long, 512), b.alone[s_long]))
      << "chunked prefill of the 2600-token sequence";
  // The same chunks through the two prefill grids forced (auto gives the decode grids to the
  // small ones).
  for (AttentionPath path : {AttentionPath::kWgmma, AttentionPath::kFused}) {
    set_attention_path(path);
    for (int64_t chunk : {1, 7, 64, 512})
      EXPECT_TRUE(same_bytes(b.chunked(s_mid, chunk), b.alone[s_mid]))
          << "chunked prefill, chunk " << chunk << ", path " << int(path);
    EXPECT_TRUE(same_bytes(b.chunked(s_long, 512), b.alone[s_long]))
        << "chunked prefill of the 2600-token sequence, path " << int(path);
  }
  reset();
  EXPECT_TRUE(same_bytes(b.chunked(s_long, 1), b.alone[s_long]))
      << "decode of the 2600-token sequence";
  // Token by token through forced decode shapes (variant, spw, cpc, fold, tail): warp-chunk and
  // CTA-chunk,
  // cp.async and TMA, a tail of 2 chunks, 8 warps serving 2 kv heads (variant 7).
  const int forced[][5] = {{1, 4, 0, 1, 0}, {0, 0, 1, 1, -1}, {3, 0, 2, 2, -1},
                           {2, 8, 0, 2, 0}, {1, 4, 0, 2, 2},  {7, 0, 1, 2, -1}};
  for (auto [v, spw, cpc, fold, tail] : forced) {
    set_attention_decode(v, spw, cpc, fold, tail);
    EXPECT_TRUE(same_bytes(b.chunked(s_long, 1), b.alone[s_long]))
        << "decode of the 2600-token sequence, variant " << v << " spw " << spw << " cpc " << cpc
        << " fold " << fold << " tail " << tail;
  }
  set_attention_decode(kDecodeTile4);
  EXPECT_TRUE(same_bytes(b.chunked(s_long, 1), b.alone[s_long])) << "decode, tile4 grid";
  set_attention_decode(kDecodeLegacy);
  EXPECT_TRUE(same_bytes(b.chunked(s_long, 1), b.alone[s_long])) << "decode, legacy stream grid";
  set_attention_streaming(false);
  EXPECT_TRUE(same_bytes(b.chunked(s_long, 1), b.alone[s_long])) << "decode, one chunk per CTA";
  reset();
}

TEST_F(CudaAttention, GraphReplayEqualsEager) {
  Bitwise b(test_seed("attention graph"));
  World& w = b.w;
  cudaStream_t st;
  BITEXACT_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  // Decode with the automatic grid, then forced CTA-chunk and warp-chunk shapes (one with a
  // tail); prefill last.
  const int shapes[][5] = {{kDecodeAuto, 0, 0, 0, -1},
                           {1, 0, 1, 1, -1},
                           {2, 4, 0, 1, -1},
                           {3, 0, 1, 2, -1},
                           {7, 4, 0, 2, 2},
                           {kDecodeTile4, 0, 0, 0, -1},
                           {kDecodeAuto, -1, 0, 0, -1},
                           {kDecodeAuto, -2, 0, 0, -1}};
  for (auto [variant, spw, cpc, fold, tail] : shapes) {
    const bool decode = spw >= 0;
    set_attention_decode(variant, std::max(spw, 0), cpc, fold, tail);
    // Prefill: -1 the automatic grid (the wgmma one), -2 the mma.sync fused grid forced.
    set_attention_path(spw == -2 ? AttentionPath::kFused : AttentionPath::kAuto);
    std::vector<Tok> toks = decode ? b.last_tokens() : b.all_tokens();
    const int64_t m = int64_t(toks.size());
    std::vector<int32_t> seq, pos, rows;
    int max_pos = 0;
    for (const Tok& t : toks)
      seq.push_back(t.seq), pos.push_back(t.pos), rows.push_back(int32_t(t.row)),
          max_pos = std::max(max_pos, t.pos + 1);
    auto gseq = upload_i32(seq, {m}), gpos = upload_i32(pos, {m}), grows = upload_i32(rows, {m});
    auto q = device_empty(DType::kBF16, {m, w.hq, w.dh}),
         out = device_empty(DType::kBF16, {m, w.hq, w.dh});
    Tensor q2 = q.t.reshape({m, w.hq * w.dh});
    ops::cuda::gather_rows(gpu_ctx(), w.gq.t.reshape({w.total, w.hq * w.dh}), grows.t, q2);
    AttentionMeta meta{gseq.t, gpos.t, w.gtable.t, int(w.bs), max_pos};
    const float scale = 1.0f / std::sqrt(float(w.dh));
    if (decode) reserve_attention_workspace(m, max_pos, w.hq, w.dh);  // no allocation in capture
    poison(out.t);
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());  // gather + poison ran on the legacy stream
    ops::cuda::attention(gpu_ctx(st), q.t, w.gkc.t, w.gvc.t, meta, scale, out.t);
    BITEXACT_CUDA_CHECK(cudaStreamSynchronize(st));
    Bytes eager = download_bytes(out.t);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    BITEXACT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    ops::cuda::attention(gpu_ctx(st), q.t, w.gkc.t, w.gvc.t, meta, scale, out.t);
    BITEXACT_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    BITEXACT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    // Replayed twice: the decode grid's arrival counters must be back at zero after a launch.
    for (int replay = 0; replay < 2; ++replay) {
      poison(out.t);
      BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
      BITEXACT_CUDA_CHECK(cudaGraphLaunch(exec, st));
      BITEXACT_CUDA_CHECK(cudaStreamSynchronize(st));
      EXPECT_TRUE(same_bytes(download_bytes(out.t), eager))
          << (decode ? "decode" : "prefill") << " graph replay " << replay << ", variant "
          << variant;
    }
    for (int64_t s = 0; s < w.nseq && decode; ++s)
      ASSERT_TRUE(same_bytes(rows_of(eager, s, 1, b.row_bytes),
                             rows_of(b.alone[s], w.len[s] - 1, 1, b.row_bytes)));
    for (int64_t s = 0; s < w.nseq && !decode; ++s)
      ASSERT_TRUE(same_bytes(rows_of(eager, w.first[s], w.len[s], b.row_bytes), b.alone[s]))
          << "prefill, seq " << s << " path " << spw;
    BITEXACT_CUDA_CHECK(cudaGraphExecDestroy(exec));
    BITEXACT_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  BITEXACT_CUDA_CHECK(cudaStreamDestroy(st));
}

// Occupies one SM per CTA (large smem) for `cycles` clocks: the attention that runs beside it
// gets the few SMs left, as on a smaller GPU of the same architecture.
__global__ void hog_sms(long long cycles) {
  extern __shared__ int hog_smem[];
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) hog_smem[threadIdx.x] = int(t0);
}

// Limited SMs: the grid is a pure function of the shapes, so the same batch run while another
// stream holds all but ~8 SMs gives the same bits.
TEST_F(CudaAttention, FewSmsGiveSameBits) {
  Bitwise b(test_seed("attention few SMs"));
  World& w = b.w;
  Bytes full_dec = run(w, b.last_tokens(), w.gkc.t, w.gvc.t);
  Bytes full_pre = run(w, b.all_tokens(), w.gkc.t, w.gvc.t);
  int sms = 0;
  BITEXACT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int smem = 200 * 1024;
  BITEXACT_CUDA_CHECK(
      cudaFuncSetAttribute(hog_sms, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  cudaStream_t hog, work;
  BITEXACT_CUDA_CHECK(cudaStreamCreateWithFlags(&hog, cudaStreamNonBlocking));
  BITEXACT_CUDA_CHECK(cudaStreamCreateWithFlags(&work, cudaStreamNonBlocking));
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
  hog_sms<<<sms - 8, 32, smem, hog>>>(2'000'000'000LL);  // ~1 s at 1.98 GHz
  BITEXACT_CUDA_CHECK(cudaGetLastError());
  Bytes few_dec = run(w, b.last_tokens(), w.gkc.t, w.gvc.t, true, work);
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
  hog_sms<<<sms - 8, 32, smem, hog>>>(2'000'000'000LL);
  Bytes few_pre = run(w, b.all_tokens(), w.gkc.t, w.gvc.t, true, work);
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(same_bytes(few_dec, full_dec)) << "decode batch with ~8 SMs";
  EXPECT_TRUE(same_bytes(few_pre, full_pre)) << "prefill batch with ~8 SMs";
  // Each prefill grid forced (auto takes the wgmma one above).
  for (AttentionPath path : {AttentionPath::kWgmma, AttentionPath::kFused}) {
    set_attention_path(path);
    hog_sms<<<sms - 8, 32, smem, hog>>>(2'000'000'000LL);
    Bytes few = run(w, b.all_tokens(), w.gkc.t, w.gvc.t, true, work);
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(same_bytes(few, full_pre)) << "prefill batch with ~8 SMs, path " << int(path);
  }
  reset();
  BITEXACT_CUDA_CHECK(cudaStreamDestroy(hog));
  BITEXACT_CUDA_CHECK(cudaStreamDestroy(work));
}

// The same comparisons in non-invariant mode (batch-dependent key split) must find a difference:
// proof that the bitwise tests above can fail.
TEST_F(CudaAttention, NonInvariantModeIsCaught) {
  Bitwise b(test_seed("attention non-invariant"));
  World& w = b.w;
  Bytes dec = run(w, b.last_tokens(), w.gkc.t, w.gvc.t, /*invariant=*/false);
  int differ = 0;
  for (int64_t s = 0; s < w.nseq; ++s) {
    Bytes one = run(w, {Tok{w.first[s] + w.len[s] - 1, int32_t(s), int32_t(w.len[s] - 1)}}, w.gkc.t,
                    w.gvc.t, false);
    differ += rows_of(dec, s, 1, b.row_bytes) != one;
  }
  std::printf("non-invariant decode: %d of %lld sequences differ alone vs batch of 64\n", differ,
              (long long)w.nseq);
  EXPECT_GT(differ, 0) << "non-invariant mode should change bits with the batch";
}

// The wgmma prefill grid with a deliberately different merge order (every sub-tile merged straight
// into the running partial, no chunk level) must give different bits for sequences longer than
// one chunk: proof that its bit comparisons above can fail. Sequences within one chunk merge in
// the same order either way and must still match.
TEST_F(CudaAttention, WgmmaMergeOrderIsCaught) {
  Bitwise b(test_seed("attention wgmma order"));
  World& w = b.w;
  set_attention_path(AttentionPath::kWgmma);
  set_attention_wgmma_flat_merge(true);
  Bytes all = run(w, b.all_tokens(), w.gkc.t, w.gvc.t);
  reset();
  int differ = 0, long_seqs = 0, short_differ = 0;
  for (int64_t s = 0; s < w.nseq; ++s) {
    const bool same = same_bytes(rows_of(all, w.first[s], w.len[s], b.row_bytes), b.alone[s]);
    if (w.len[s] > kAttentionChunk) {
      ++long_seqs;
      differ += !same;
    } else {
      short_differ += !same;
    }
  }
  std::printf("wgmma flat merge: %d of %d sequences over one chunk differ, %d shorter ones\n",
              differ, long_seqs, short_differ);
  EXPECT_GT(differ, 0) << "a different merge order should change bits";
  EXPECT_EQ(short_differ, 0) << "one-chunk sequences merge in the same order";
}

}  // namespace
}  // namespace bitexact::ops::cuda::test
