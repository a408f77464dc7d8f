// Host side of the Hopper GEMM path (gemm/wgmma_kernel.cuh): tensor maps for x and w (encoded
// through the driver entry point, so no libcuda link), the tile choice, and the launch.
#include <cudaTypedefs.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/gemm/wgmma_kernel.cuh"
#include "ops/cuda/gemm/wgmma_launch.cuh"
#include "ops/cuda/linear_cuda.cuh"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda::linear_detail {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::atomic<bool> g_v7_auto{true};  // set_wgmma_v7_auto

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    LINEAR_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                       cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || f == nullptr)
      fail(ErrorKind::kInternal,
           "linear: the driver has no cuTensorMapEncodeTiled (needs CUDA 12+)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// [rows, K] bf16 with row stride ld (elements), read in boxes of 64 K x box_rows rows, 128-byte
// swizzle (the layout sw128_desc describes); boxes past the edges are filled with zeros.
CUtensorMap make_tensor_map(const void* ptr, int64_t rows, int64_t K, int64_t ld, int box_rows) {
  // A one-row tensor's stride is never used, but the encoder checks it against the row length.
  if (rows == 1) ld = ceil_div(K, 8) * 8;
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
  const cuuint32_t box[2] = {cuuint32_t(kWgmmaBK), cuuint32_t(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  CUresult r = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(ptr), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    fail(ErrorKind::kInternal, "linear: cuTensorMapEncodeTiled failed (CUresult " +
                                   std::to_string(int(r)) + ") for a [" + std::to_string(rows) +
                                   ", " + std::to_string(K) + "] tensor, row stride " +
                                   std::to_string(ld));
  return map;
}

template <int BM, int BN, int STAGES, bool FOLD, int CLUSTER, bool SPLIT = false, int EPI_N = 0>
void launch_tile(LinearParams p, cudaStream_t stream) {
  constexpr int smem = wgmma_smem_bytes<BM, BN, STAGES, EPI_N>();
  static_assert(smem <= 227 * 1024, "shared memory per block");
  auto kernel = linear_wgmma_kernel<BM, BN, STAGES, FOLD, CLUSTER, SPLIT, EPI_N>;
  static std::atomic<uint64_t> attr_set{0};
  allow_dynamic_smem(kernel, smem, attr_set);
  const CUtensorMap tmap_x = make_tensor_map(p.x, p.M, p.K, p.ldx, BM);
  const CUtensorMap tmap_w = make_tensor_map(p.w, p.N, p.K, p.K, BN / CLUSTER);
  // v6 TMA-store epilogue: y [M, N] in boxes of 64 x 64 (check_linear_args guarantees the
  // 16-byte alignment of y and of its row stride). Unused (x's map as filler) otherwise.
  const CUtensorMap tmap_y = EPI_N > 0 ? make_tensor_map(p.y, p.M, p.N, p.ldy, 64) : tmap_x;
  const int64_t units_m = ceil_div(p.M, int64_t(BM) * CLUSTER), n_tiles = ceil_div(p.N, BN);
  // Raster groups of M-units whose x rows stay around 16 MB so that the CTAs in flight share
  // weight tiles through L2 (as in linear.cu). Speed only.
  p.group_m = int(std::clamp<int64_t>((int64_t(16) << 20) / (int64_t(BM) * CLUSTER * p.K * 2), 1,
                                      units_m));
  // The grid is a function of (M, N, K, tile), never of the SM count: persistent CTAs
  // (kWgmmaCtas at most) without clusters, one cluster per unit with them.
  int64_t units = units_m * n_tiles;
  int chunks_per_item = 0;
  if constexpr (SPLIT) {
    // Work items (tile, run of R chunks); one f32 slot per (tile, chunk) and a counter per tile.
    chunks_per_item = wgmma_split_chunks_per_item(p.M, p.N, p.S, BM, BN);
    const SplitBuffers ws =
        linear_split_workspace(stream, size_t(units) * p.S * BM * BN, size_t(units));
    p.partial = ws.partial;
    p.counters = ws.counters;
    units *= ceil_div(p.S, chunks_per_item);
  }
  const dim3 grid(unsigned(CLUSTER == 1 ? std::min<int64_t>(units, kWgmmaCtas) : units * CLUSTER));
  cudaLaunchAttribute attr[2];
  int n_attr = 0;
  if (pdl_enabled()) {
    attr[n_attr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n_attr++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (CLUSTER > 1) {
    attr[n_attr].id = cudaLaunchAttributeClusterDimension;
    attr[n_attr].val.clusterDim.x = CLUSTER;
    attr[n_attr].val.clusterDim.y = 1;
    attr[n_attr++].val.clusterDim.z = 1;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3((BM / 64 + 1) * 128);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = n_attr;
  LINEAR_CUDA_CHECK(
      cudaLaunchKernelEx(&config, kernel, p, tmap_x, tmap_w, tmap_y, chunks_per_item));
}

template <int BM, int BN, int STAGES, int CLUSTER, int EPI_N = 0>
void launch_config(const LinearParams& p, cudaStream_t stream) {
  if (p.S > 1) launch_tile<BM, BN, STAGES, true, CLUSTER, false, EPI_N>(p, stream);
  else launch_tile<BM, BN, STAGES, false, CLUSTER, false, EPI_N>(p, stream);
}

}  // namespace

const char* wgmma_tile_name(WgmmaTile tile) {
  switch (tile) {
    case WgmmaTile::kAuto: return "auto";
    case WgmmaTile::k128x128: return "128x128";
    case WgmmaTile::k128x256: return "128x256";
    case WgmmaTile::k128x192: return "128x192";
    case WgmmaTile::k64x128: return "64x128";
    case WgmmaTile::k128x64: return "128x64";
    case WgmmaTile::k128x256c2: return "128x256c2";
    case WgmmaTile::k128x192c2: return "128x192c2";
    case WgmmaTile::k128x128c2: return "128x128c2";
    case WgmmaTile::k128x128s: return "128x128s";
    case WgmmaTile::k64x128s: return "64x128s";
    case WgmmaTile::k128x64s: return "128x64s";
    case WgmmaTile::k64x64s: return "64x64s";
    case WgmmaTile::k128x256t: return "128x256t";
    case WgmmaTile::k128x256t3: return "128x256t3";
    case WgmmaTile::k128x192t: return "128x192t";
    case WgmmaTile::k128x128t: return "128x128t";
    case WgmmaTile::k64x128t: return "64x128t";
    case WgmmaTile::k128x64t: return "128x64t";
    case WgmmaTile::k64x64t: return "64x64t";
  }
  return "?";
}

bool wgmma_tile_is_wide(WgmmaTile tile) {
  return tile == WgmmaTile::k128x256 || tile == WgmmaTile::k128x256c2 ||
         tile == WgmmaTile::k128x256t || tile == WgmmaTile::k128x256t3;
}

bool wgmma_tile_is_split(WgmmaTile tile) {
  return tile == WgmmaTile::k128x128s || tile == WgmmaTile::k64x128s ||
         tile == WgmmaTile::k128x64s || tile == WgmmaTile::k64x64s;
}

int wgmma_split_chunks_per_item(int64_t M, int64_t N, int S, int bm, int bn) {
  const int64_t tiles = ceil_div(M, bm) * ceil_div(N, bn);
  const int64_t groups = std::clamp<int64_t>(kWgmmaCtas / tiles, 1, S);
  return int(ceil_div(S, groups));
}

namespace {
std::atomic<bool> g_split_auto{true};
}  // namespace

void set_wgmma_split_auto(bool on) { g_split_auto.store(on); }

namespace {
std::atomic<bool> g_tma_store_auto{true};
}  // namespace

void set_wgmma_tma_store_auto(bool on) { g_tma_store_auto.store(on); }

void set_wgmma_v7_auto(bool on) { g_v7_auto.store(on); }

// The split tile for this problem, or kAuto where the plain tiles (or mma.sync) are faster.
// Speed only. bench_gemm --tiles, H100 (gemm.md v5): split items won at M = 32..256 where the
// plain tiles leave SMs idle: up to 32 tiles of 64 x 128, up to 64 with K >= 4096, up to 128
// with K >= 12288; never at M = 512; and only where K is really cut (>= 2 items per tile:
// 8B qkv at M = 32 has 96 tiles of 64 x 64, one item each, and lost 15%), and K >= 2048
// (0.6B qkv, K = 1024: -5% to +8% over three runs). 64 x 64 items while
// one 64-row tile covers M or K <= 3072, else 128-row items, 128 wide from 128 tiles.
WgmmaTile wgmma_split_tile(int64_t M, int64_t N, int64_t K, int S) {
  if (!g_split_auto.load(std::memory_order_relaxed)) return WgmmaTile::kAuto;
  if (S < 2 || M < 32 || M > 256 || K < 2048) return WgmmaTile::kAuto;
  const int64_t tiles64 = ceil_div(M, 64) * ceil_div(N, 128);
  if (!(tiles64 <= 32 || (tiles64 <= 64 && K >= 4096) || (tiles64 <= 128 && K >= 12288)))
    return WgmmaTile::kAuto;
  int bm = 128, bn = 64;
  WgmmaTile tile = WgmmaTile::k128x64s;
  if (M <= 64 || K <= 3072) {
    bm = 64;
    tile = WgmmaTile::k64x64s;
  } else if (tiles64 >= 128) {
    bn = 128;
    tile = WgmmaTile::k128x128s;
  }
  const int64_t groups = ceil_div(S, wgmma_split_chunks_per_item(M, N, S, bm, bn));
  return groups >= 2 ? tile : WgmmaTile::kAuto;
}

bool wgmma_split_pays(int64_t M, int64_t N, int64_t K, int S) {
  return wgmma_split_tile(M, N, K, S) != WgmmaTile::kAuto;
}

namespace {

// The plain (not split) tile of the cost model below.
WgmmaTile wgmma_plain_tile(int64_t M, int64_t N, int64_t K, int S);

}  // namespace

WgmmaTile wgmma_auto_tile(int64_t M, int64_t N, int64_t K, int S) {
  const bool v7 = g_v7_auto.load(std::memory_order_relaxed) &&
                  g_tma_store_auto.load(std::memory_order_relaxed);
  // v7 (bench_gemm --tiles, H100, gemm.md v7 run 1): narrow weights with K <= 2048 at M >= 128
  // where 64x64t runs <= 64 CTAs: it was best at all 3 such points (0.6B o M = 256: 8.03 us
  // against 9.12 for 64x128t and 10.09 for the split items; 1.7B o M = 128: 8.08 against 8.98);
  // at 128 CTAs it won 1, tied 2 and lost 1 of 4 (1.7B o M = 256: -5%), and at longer K the
  // split items won (0.6B down M = 128, 30B o, 1.7B down). Run 3, same run, v6 rule -> this:
  // 0.6B o M = 256 10.61 -> 8.67 us, 1.7B o M = 128 9.08 -> 8.42, 0.6B o M = 128 8.45 -> 8.57.
  if (v7 && M >= 128 && K <= 2048 && ceil_div(M, 64) * ceil_div(N, 64) <= 64)
    return WgmmaTile::k64x64t;
  if (const WgmmaTile split = wgmma_split_tile(M, N, K, S); split != WgmmaTile::kAuto)
    return split;
  return wgmma_plain_tile(M, N, K, S);
}

namespace {

WgmmaTile wgmma_plain_tile(int64_t M, int64_t N, int64_t K, int S) {
  // Speed only (every tile gives the same bits). Cost model: rounds of kWgmmaCtas CTAs times the
  // work of one CTA (BM * BN) over the tile's relative throughput, fitted to bench_gemm --paths
  // on the H100 (docs/notes/gemm.md, v4): within ~1% of the best tile on average over 16 shapes
  // x M = 64..4096. Wider tiles read fewer L2 bytes per flop but leave SMs idle in the last
  // round. Ties go to the earlier (wider) entry. The cluster tiles are left out: they gained
  // 0-5% at K >= 4096 and lost up to 20% at K <= 2048 (non-persistent grids).
  struct Choice {
    WgmmaTile tile;
    int bm, bn, cluster;
    double rate;  // throughput relative to 128x256 at large M
  };
  const bool small_m = M <= 128;  // 64-row tiles measured ahead of 128x64 up to M = 128
  const Choice v5_choices[] = {
      {WgmmaTile::k128x256, 128, 256, 1, 1.0},
      {WgmmaTile::k128x192, 128, 192, 1, 0.92},
      {WgmmaTile::k128x128, 128, 128, 1, 0.83},
      {WgmmaTile::k64x128, 64, 128, 1, small_m ? 0.64 : 0.60},
      {WgmmaTile::k128x64, 128, 64, 1, 0.62}};
  // v6: the TMA-store epilogue tiles, rates relative to 128x256t (bench_gemm --tiles, H100,
  // gemm.md v6, device runs 1-2): 128x128t 0.86; 128x192t 0.92 at K >= 4096 but 0.80 below
  // (its fold variant spills 272 B; 128x128t won every K <= 2048 point there); 64x128t 0.63,
  // so that it takes the ties with 128x64t (it won 5 of 6 narrow-N points at M = 512).
  const Choice v6_choices[] = {
      {WgmmaTile::k128x256t, 128, 256, 1, 1.0},
      {WgmmaTile::k128x192t, 128, 192, 1, K >= 4096 ? 0.92 : 0.80},
      {WgmmaTile::k128x128t, 128, 128, 1, 0.86},
      {WgmmaTile::k64x128t, 64, 128, 1, small_m ? 0.64 : 0.63},
      {WgmmaTile::k128x64t, 128, 64, 1, 0.62}};
  const bool v6 = g_tma_store_auto.load(std::memory_order_relaxed);
  WgmmaTile best = v6 ? WgmmaTile::k128x128t : WgmmaTile::k128x128;
  double best_cost = 0;
  for (const Choice& c : v6 ? v6_choices : v5_choices) {
    if (c.bn == 256 && S > 1) continue;
    const int64_t ctas = ceil_div(M, int64_t(c.bm) * c.cluster) * c.cluster * ceil_div(N, c.bn);
    const double cost = double(ceil_div(ctas, kWgmmaCtas)) * c.bm * c.bn / c.rate;
    if (best_cost == 0 || cost < best_cost) {
      best = c.tile;
      best_cost = cost;
    }
  }
  return best;
}

}  // namespace

void launch_wgmma(LinearParams p, cudaStream_t stream, WgmmaTile tile) {
  if (tile == WgmmaTile::kAuto) tile = wgmma_auto_tile(p.M, p.N, p.K, p.S);
  if (wgmma_tile_is_wide(tile) && p.S > 1)  // 2 x 128 accumulators per thread do not fit the register file
    fail(ErrorKind::kInvalidArgument, "linear: the 128x256 wgmma tiles need S == 1");
  switch (tile) {
    case WgmmaTile::k128x256: launch_tile<128, 256, 4, false, 1>(p, stream); break;
    case WgmmaTile::k128x256c2: launch_tile<128, 256, 4, false, 2>(p, stream); break;
    case WgmmaTile::k128x192: launch_config<128, 192, 5, 1>(p, stream); break;
    case WgmmaTile::k128x192c2: launch_config<128, 192, 5, 2>(p, stream); break;
    case WgmmaTile::k128x128: launch_config<128, 128, 6, 1>(p, stream); break;
    case WgmmaTile::k128x128c2: launch_config<128, 128, 6, 2>(p, stream); break;
    case WgmmaTile::k64x128: launch_config<64, 128, 8, 1>(p, stream); break;
    case WgmmaTile::k128x64: launch_config<128, 64, 8, 1>(p, stream); break;
    case WgmmaTile::k128x128s: launch_tile<128, 128, 6, false, 1, true>(p, stream); break;
    case WgmmaTile::k64x128s: launch_tile<64, 128, 8, false, 1, true>(p, stream); break;
    case WgmmaTile::k128x64s: launch_tile<128, 64, 8, false, 1, true>(p, stream); break;
    case WgmmaTile::k64x64s: launch_tile<64, 64, 8, false, 1, true>(p, stream); break;
    // v6 TMA-store epilogues (stages traded for the staging buffer: 227 KB of shared memory).
    case WgmmaTile::k128x256t: launch_tile<128, 256, 4, false, 1, false, 128>(p, stream); break;
    case WgmmaTile::k128x256t3: launch_tile<128, 256, 3, false, 1, false, 256>(p, stream); break;
    case WgmmaTile::k128x192t: launch_config<128, 192, 4, 1, 192>(p, stream); break;
    case WgmmaTile::k128x128t: launch_config<128, 128, 6, 1, 128>(p, stream); break;
    case WgmmaTile::k64x128t: launch_config<64, 128, 8, 1, 128>(p, stream); break;
    case WgmmaTile::k128x64t: launch_config<128, 64, 8, 1, 64>(p, stream); break;
    // v7 small tile: a deep ring (192 KB of stages) keeps ~1.5 us of one SM's loads in flight.
    case WgmmaTile::k64x64t: launch_config<64, 64, 12, 1, 64>(p, stream); break;
    case WgmmaTile::kAuto: break;
  }
}

}  // namespace bitexact::ops::cuda::linear_detail
