// The Hopper wgmma path of ops::cuda::linear, tile by tile: every wgmma tile configuration gives
// the same bits as the mma.sync large-tile path on every engine shape, at M values that cut the
// tiles everywhere (M tails, K tails, S > 1 chunk folds); a different K chunking is shown to
// change bits (the comparison can fail). The row-block and CPU-reference tests cover kWgmma too.
#include "linear_test_util.cuh"
#include "ops/cuda/gemm/wgmma_launch.cuh"

namespace bitexact::ops::cuda::linear_test {
namespace {

using linear_detail::LinearParams;
using linear_detail::WgmmaTile;

LinearParams params_for(const Tensor& x, const Tensor& w, Tensor& y, int kc) {
  return linear_detail::linear_params(x, w, y, {kc, int((x.dim(1) + kc - 1) / kc)});
}

// Prints up to 4 differing elements of a[:rows] vs b[:rows] (to tell a layout bug from an
// order bug when the counts are not zero).
void print_first_diffs(const DeviceBuffer& a, const DeviceBuffer& b, int64_t rows, int64_t cols) {
  std::vector<uint16_t> ha(rows * cols), hb(rows * cols);
  if (cudaMemcpy(ha.data(), a.ptr, ha.size() * 2, cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemcpy(hb.data(), b.ptr, hb.size() * 2, cudaMemcpyDeviceToHost) != cudaSuccess)
    return;
  int shown = 0;
  for (int64_t i = 0; i < rows * cols && shown < 4; ++i)
    if (ha[i] != hb[i]) {
      std::printf("    row %lld col %lld: wgmma %g, mma.sync %g\n", (long long)(i / cols),
                  (long long)(i % cols), bf16_to_f32(ha[i]), bf16_to_f32(hb[i]));
      ++shown;
    }
}

// (1) Every tile vs the large mma.sync path, bitwise, at M values around the tile edges.
TEST(LinearWgmma, EveryTileEqualsMmaSyncPath) {
  const WgmmaTile tiles[] = {WgmmaTile::k128x128,   WgmmaTile::k128x256,   WgmmaTile::k64x128,
                             WgmmaTile::k128x64,    WgmmaTile::k128x192,   WgmmaTile::k128x256c2,
                             WgmmaTile::k128x192c2, WgmmaTile::k128x128c2, WgmmaTile::k128x128s,
                             WgmmaTile::k64x128s,   WgmmaTile::k128x64s,   WgmmaTile::k64x64s,
                             WgmmaTile::k128x256t,  WgmmaTile::k128x256t3, WgmmaTile::k128x192t,
                             WgmmaTile::k128x128t,  WgmmaTile::k64x128t,   WgmmaTile::k128x64t,
                             WgmmaTile::k64x64t};
  const int64_t ms[] = {1, 17, 64, 65, 127, 128, 129, 200, 256, 383, 1000, 2048};
  constexpr int64_t kMaxM = 2048;
  uint64_t salt = 700;
  int total_failures = 0;
  for (const Shape& s : all_shapes()) {
    const linear_detail::LinearPlan plan = linear_detail::linear_plan(s.N, s.K);
    DeviceBuffer x(kMaxM * s.K * 2), w(s.N * s.K * 2), y_ref(kMaxM * s.N * 2), y(kMaxM * s.N * 2);
    fill_random_device(x.u16(), kMaxM * s.K, salt++);
    fill_random_device(w.u16(), s.N * s.K, salt++);
    ExecContext ctx{Device::kCuda};
    Tensor wt = dev_matrix(w.ptr, s.N, s.K, s.K);
    int checks = 0, failures = 0;
    for (int64_t m : ms) {
      Tensor xt = dev_matrix(x.ptr, m, s.K, s.K);
      Tensor yr = dev_matrix(y_ref.ptr, m, s.N, s.N), yt = dev_matrix(y.ptr, m, s.N, s.N);
      LT_CHECK(cudaMemset(y_ref.ptr, 0xFF, m * s.N * 2));
      linear_detail::linear_invariant(ctx, xt, wt, yr, LinearPath::kLarge);
      for (WgmmaTile tile : tiles) {
        if (linear_detail::wgmma_tile_is_wide(tile) && plan.S > 1) continue;  // no fold registers
        // Split tiles up to M = 1000 (the auto rule uses them up to 512; their workspace is
        // S x M x N f32): M = 1 .. 1000 runs 1 to S chunks per item, S = 1 included.
        if (linear_detail::wgmma_tile_is_split(tile) && m > 1000) continue;
        LT_CHECK(cudaMemset(y.ptr, 0xFE, m * s.N * 2));
        linear_detail::launch_wgmma(params_for(xt, wt, yt, plan.kc), nullptr, tile);
        const unsigned long long n_diff = count_diffs(y_ref.u16(), s.N, y.u16(), s.N, m, s.N);
        ++checks;
        if (n_diff != 0) {
          ++failures;
          ADD_FAILURE() << s.name << " m=" << m << " tile " << linear_detail::wgmma_tile_name(tile)
                        << ": " << n_diff << " of " << m * s.N << " elements differ";
          if (failures <= 3) print_first_diffs(y, y_ref, m, s.N);
        }
      }
    }
    std::printf("%-14s N=%-6lld K=%-5lld kc=%-5d S=%-2d wgmma tile checks=%d mismatching=%d\n",
                s.name, (long long)s.N, (long long)s.K, plan.kc, plan.S, checks, failures);
    total_failures += failures;
  }
  EXPECT_EQ(total_failures, 0);
}

// (2) The comparison above can fail: the same wgmma kernel with K cut into other chunks (a
// different fold order) gives different bits for some elements; for a plain tile and for a
// split-K tile (whose fold runs through the workspace), and for TMA-store epilogue tiles (v6;
// v7's 64x64t).
TEST(LinearWgmma, OtherChunkingChangesBits) {
  const Shape s{"8B down", 4096, 12288};
  const linear_detail::LinearPlan plan = linear_detail::linear_plan(s.N, s.K);
  ASSERT_GE(plan.kc, 256);
  const int64_t m = 256;
  DeviceBuffer x(m * s.K * 2), w(s.N * s.K * 2), y_ref(m * s.N * 2), y(m * s.N * 2);
  fill_random_device(x.u16(), m * s.K, 801);
  fill_random_device(w.u16(), s.N * s.K, 802);
  Tensor xt = dev_matrix(x.ptr, m, s.K, s.K), wt = dev_matrix(w.ptr, s.N, s.K, s.K);
  Tensor yr = dev_matrix(y_ref.ptr, m, s.N, s.N), yt = dev_matrix(y.ptr, m, s.N, s.N);
  for (WgmmaTile tile : {WgmmaTile::k128x128, WgmmaTile::k64x128s, WgmmaTile::k128x128t,
                         WgmmaTile::k64x64t}) {
    linear_detail::launch_wgmma(params_for(xt, wt, yr, plan.kc), nullptr, tile);
    linear_detail::launch_wgmma(params_for(xt, wt, yt, plan.kc / 2), nullptr, tile);
    const unsigned long long n_diff = count_diffs(y_ref.u16(), s.N, y.u16(), s.N, m, s.N);
    std::printf("%s: kc %d vs %d: %llu of %lld elements differ\n",
                linear_detail::wgmma_tile_name(tile), plan.kc, plan.kc / 2, n_diff,
                (long long)(m * s.N));
    EXPECT_GT(n_diff, 0u) << linear_detail::wgmma_tile_name(tile);
  }
}

TEST(LinearWgmma, WideTileRejectsSplitPlans) {
  DeviceBuffer x(128 * 1024 * 2), w(256 * 1024 * 2), y(128 * 256 * 2);
  Tensor xt = dev_matrix(x.ptr, 128, 1024, 1024), wt = dev_matrix(w.ptr, 256, 1024, 1024);
  Tensor yt = dev_matrix(y.ptr, 128, 256, 256);
  for (WgmmaTile tile : {WgmmaTile::k128x256, WgmmaTile::k128x256c2, WgmmaTile::k128x256t,
                         WgmmaTile::k128x256t3})
    EXPECT_THROW(linear_detail::launch_wgmma(params_for(xt, wt, yt, 256), nullptr, tile), Error);
}

}  // namespace
}  // namespace bitexact::ops::cuda::linear_test
