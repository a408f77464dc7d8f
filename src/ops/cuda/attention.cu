// Host side of CUDA attention: checks what the kernels assume, picks the grid (decode, split,
// fused or wgmma prefill, all bit-identical), owns the partial workspace and the decode grid's
// arrival counters, and in non-invariant mode splits the keys by a batch-dependent factor
// (FlashDecoding-style) so that invariance tests can fail.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

#include "ops/cuda/attention_control.cuh"
#include "ops/cuda/attention_decode.cuh"
#include "ops/cuda/attention_fused.cuh"
#include "ops/cuda/attention_prefill_wgmma.cuh"
#include "ops/cuda/attention_stream.cuh"
#include "ops/cuda/attention_tile4.cuh"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace bitexact::ops::cuda {
namespace {

static_assert(attn::kSubTiles * attn::kSubKeys == kAttentionChunk, "sub-tiles must tile a chunk");

AttentionPath g_path = AttentionPath::kAuto;
bool g_streaming = true;  // split family: stream_kernel (chunks per CTA) or one chunk per CTA
int g_fused_config = 0;   // fused grid: 0 = 8 warps / 4 K/V sub-tiles, 1 = 4 / 2, 2 = 8 / 2
int g_decode_variant = kDecodeAuto;  // decode grid: auto, legacy, or a forced variant

// Decode grid variants (speed only, equal bits): warps per CTA, ring slots (16-key K or V
// pieces) per warp, copy engine, and kv heads per CTA in the warp-chunk shape (the warps of a
// CTA read the same keys of neighbouring heads, whose rows interleave in a cache block; 1 where
// hkv is not a multiple). In the CTA-chunk shape (and the tail) a CTA serves warps / 4 heads (1
// where hkv is not a multiple: then warps 4.. idle).
struct DecodeVariant {
  int warps, ring;
  bool tma;
  int min_blocks;  // CTAs per SM the register budget is capped for
  int hpc;         // kv heads per CTA, warp-chunk shape
};
constexpr DecodeVariant kDecodeVariants[] = {
    {4, 4, false, 1, 1}, {4, 4, true, 1, 1}, {4, 6, false, 1, 1}, {4, 6, true, 1, 1},
    {4, 8, false, 1, 1}, {4, 8, true, 1, 1}, {4, 4, true, 3, 1},  {8, 4, true, 1, 8}};
constexpr int kNumDecodeVariants = int(sizeof(kDecodeVariants) / sizeof(kDecodeVariants[0]));
int g_decode_spw = 0;    // forced warp-chunk shape: sub-tiles per warp (0 = auto)
int g_decode_cpc = 0;    // forced CTA-chunk shape: chunks per CTA (0 = auto)
int g_decode_fold = 0;   // forced fold: 1 = last CTA, 2 = merge_chunks_kernel (0 = auto)
int g_decode_tail = -1;  // forced tail: chunks per token in one-chunk CTAs at the end (-1 = auto)

// Chunk partials: grown with cudaMalloc outside capture, never freed. One per device: the
// ranks of a tensor-parallel group drive several GPUs from one process.
struct Workspace {
  std::mutex mu;
  void* ptr = nullptr;
  size_t bytes = 0;
};
Workspace& workspace() {
  static std::mutex mu;
  static std::map<int, Workspace> per_device;  // nodes never move: references stay valid
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  return per_device[dev];
}

// The shared-memory opt-in is a per-device attribute: set(); once per device (bit per device).
// Two threads may both set it the first time; setting it twice is harmless.
template <typename F>
void once_per_device(std::atomic<uint64_t>& done, F set) {
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = uint64_t(1) << dev;
  if (done.load() & bit) return;
  set();
  done.fetch_or(bit);
}

// Arrival counters of the decode grid, one per (token, kv head): allocated zeroed once per device
// outside graph capture; every launch leaves them zero again (the last CTA resets its counter).
constexpr int64_t kMaxCounters = int64_t(1) << 20;
struct Counters {
  std::mutex mu;
  int* ptr = nullptr;
};
int* counters(bool may_allocate) {
  static std::mutex mu;
  static std::map<int, Counters> per_device;
  int dev = 0;
  BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
  Counters* c;
  {
    std::lock_guard<std::mutex> lock(mu);
    c = &per_device[dev];
  }
  std::lock_guard<std::mutex> lock(c->mu);
  if (!c->ptr && may_allocate) {
    BITEXACT_CUDA_CHECK(cudaMalloc(&c->ptr, kMaxCounters * sizeof(int)));
    BITEXACT_CUDA_CHECK(cudaMemset(c->ptr, 0, kMaxCounters * sizeof(int)));
    BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());  // zero before any stream uses them
  }
  return c->ptr;
}

bool capturing(cudaStream_t st) {
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  BITEXACT_CUDA_CHECK(cudaStreamIsCapturing(st, &cap));
  return cap != cudaStreamCaptureStatusNone;
}

size_t partial_bytes(int64_t tokens, int64_t splits, int64_t hq, int64_t dh) {
  return size_t(tokens * hq * splits) * size_t(dh + 2) * sizeof(float);
}

void* ensure_workspace(size_t bytes, cudaStream_t st) {
  Workspace& w = workspace();
  std::lock_guard<std::mutex> lock(w.mu);
  if (bytes <= w.bytes) return w.ptr;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  BITEXACT_CUDA_CHECK(cudaStreamIsCapturing(st, &cap));
  if (cap != cudaStreamCaptureStatusNone)
    fail(ErrorKind::kOutOfResources,
         "cuda attention: workspace of " + std::to_string(w.bytes) + " bytes is too small (" +
             std::to_string(bytes) +
             " needed) during graph capture; call "
             "reserve_attention_workspace() or run the shape eagerly before capturing");
  if (w.ptr) BITEXACT_CUDA_CHECK(cudaFree(w.ptr));  // cudaFree waits for kernels using it
  bump_workspace_epoch();  // graphs captured with the old pointer are stale
  w.ptr = nullptr;
  w.bytes = 0;
  bytes = std::max(bytes, size_t(1) << 20);
  BITEXACT_CUDA_CHECK(cudaMalloc(&w.ptr, bytes));
  w.bytes = bytes;
  return w.ptr;
}

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
    BITEXACT_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

// Fused grid configurations (warps per CTA, K/V sub-tiles in flight): speed only, equal bits.
int fused_rows(int config) { return config == 1 ? 64 : 128; }

template <int DH, int kWarps, int kSlots>
void launch_fused(const attn::Params& p, cudaStream_t st) {
  constexpr int smem = attn::fused_smem_bytes<DH, kWarps, kSlots>();
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::fused_kernel<DH, kWarps, kSlots>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  });
  const int tokens = 16 * kWarps / p.group;
  dim3 grid(ceil_div(p.M, tokens) * unsigned(p.hkv));
  attn::fused_kernel<DH, kWarps, kSlots><<<grid, 32 * kWarps, smem, st>>>(p);
  BITEXACT_CUDA_CHECK_LAUNCH();
}

// The wgmma prefill grid (attention_prefill_wgmma.cuh): CTA of 2 warpgroups per (128 rows, kv head).
constexpr int kPwStages = 4;  // K/V sub-tiles in the ring (shared memory bounds it)
bool g_wgmma_flat = false;     // tests only: the wgmma grid's deliberately different merge order
template <int DH, bool kFlat>
void launch_prefill_wgmma_t(const attn::Params& p, cudaStream_t st) {
  constexpr int smem = attn::prefill_wgmma_smem_bytes<DH, kPwStages>();
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::prefill_wgmma_kernel<DH, kPwStages, kFlat>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  });
  const int tokens = attn::kPwRows / p.group;
  dim3 grid(ceil_div(p.M, tokens) * unsigned(p.hkv));
  attn::prefill_wgmma_kernel<DH, kPwStages, kFlat><<<grid, attn::kPwThreads, smem, st>>>(p);
  BITEXACT_CUDA_CHECK_LAUNCH();
}
template <int DH>
void launch_prefill_wgmma(const attn::Params& p, cudaStream_t st) {
  if (g_wgmma_flat)
    launch_prefill_wgmma_t<DH, true>(p, st);
  else
    launch_prefill_wgmma_t<DH, false>(p, st);
}

template <int DH, int kWarps, int kRing, bool kTma, int kMinBlocks = 1>
void launch_decode_t(const attn::Params& p, const attn::DecodeArgs& a, cudaStream_t st) {
  constexpr int ring = attn::decode_ring_bytes<DH, kWarps, kRing>();
  const int park = a.cpc > 0 || a.tail_ctas > 0 ? kWarps * attn::park_floats<DH>(p.group) * 4 : 0;
  const int smem = attn::decode_smem_bytes(ring, kWarps, kRing, a.tab_cap, park);
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    // The most dynamic shared memory the kernel may take: the opt-in limit less its static part
    // (the table's and parking area's sizes, and so the launch's, vary with the shapes).
    auto kernel = attn::decode_kernel<DH, kWarps, kRing, kTma, kMinBlocks>;
    int dev = 0, optin = 0;
    BITEXACT_CUDA_CHECK(cudaGetDevice(&dev));
    BITEXACT_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaFuncAttributes attr{};
    BITEXACT_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             optin - int(attr.sharedSizeBytes)));
  });
  const dim3 grid(unsigned(a.main_ctas + int64_t(p.M) * (p.hkv / a.tail_hpc) * a.tail_ctas));
  BITEXACT_CUDA_CHECK(launch_pdl(attn::decode_kernel<DH, kWarps, kRing, kTma, kMinBlocks>, grid,
                                 dim3(32 * kWarps), smem, st, p, a));
}

// attention_tile4.cuh's grid: clusters of 4 CTAs (one per sub-tile of a chunk) per (token, kv
// head, chunk); chunk partials folded by merge_chunks_kernel.
template <int DH>
void launch_tile4(const attn::Params& p, const attn::DecodeArgs& a, cudaStream_t st) {
  const int smem = attn::tile4_smem_bytes<DH>(p.group);
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::tile4_kernel<DH>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             attn::tile4_smem_bytes<DH>(16)));
  });
  const dim3 grid(unsigned(int64_t(p.M) * p.hkv * a.max_units * 4));
  BITEXACT_CUDA_CHECK(launch_pdl(attn::tile4_kernel<DH>, grid, dim3(128), smem, st, p, a));
}

template <int DH>
void launch_decode(int variant, const attn::Params& p, const attn::DecodeArgs& a, cudaStream_t st) {
  switch (variant) {
    case 0:
      return launch_decode_t<DH, 4, 4, false>(p, a, st);
    case 1:
      return launch_decode_t<DH, 4, 4, true>(p, a, st);
    case 2:
      return launch_decode_t<DH, 4, 6, false>(p, a, st);
    case 3:
      return launch_decode_t<DH, 4, 6, true>(p, a, st);
    case 4:
      return launch_decode_t<DH, 4, 8, false>(p, a, st);
    case 5:
      return launch_decode_t<DH, 4, 8, true>(p, a, st);
    case 6:
      return launch_decode_t<DH, 4, 4, true, 3>(p, a, st);
    default:
      return launch_decode_t<DH, 8, 4, true>(p, a, st);
  }
}

// The decode grid's shape for M tokens of up to `chunks` chunks (speed only): the variant,
// either warp-chunk (spw sub-tiles per warp) or CTA-chunk (cpc chunks per CTA), and who folds
// the chunk partials. From the H100 sweep of 2026-11-24 (docs/PERFORMANCE.md), in chunks of work
// w = M * hkv * chunks per SM: up to 0.5 the tile4 grid (4 warps per sub-tile: a sub-tile's
// latency dominates; H100 b1 x 200 keys 9.4 -> 7.1 us, b1 x 1k 13.1 -> 10.9, b8 x 200 10.0 -> 9.2
// vs legacy, but b1 x 4k 20.9 vs 15.4); below 1.5 the legacy stream grid is as fast or faster
// (variant kDecodeLegacy); below 3, CTA-chunk (4 warps per chunk);
// above, a chunk per warp, with the 8-slot cp.async ring below 6 and the 4-slot TMA ring above.
// merge_chunks_kernel folds: the last-CTA fold was never faster (1-2% slower at batch 64, up to
// 55% at small batches, where every CTA pays the fence and counter round trips).
// Session 6 (same sweep method, docs/notes/cuda_ops.md): from w = 24 the last ceil(#SM / (M *
// hkv)) chunks of every token run as a tail of one-chunk CTAs (b8 x 16k 222.4 -> 219.0-220.6 us,
// b64 x 4k 409.7 -> 404.9, b64 x 16k 1575.5 -> 1568.0; slower where the grid is 1-2 waves: b8 x
// 4k 62.3 -> 65-67, b64 x 1k 113.6 -> 121.9), and from w = 128 the 8-warp CTAs serving the 8
// kv heads of a token (variant 7: b64 x 16k 1568.0 -> 1559.1, in three calls 0.4-0.8% faster).
struct DecodeShape {
  int variant, spw, cpc, fold, tail;
};
DecodeShape pick_decode(int64_t M, int64_t hkv, int64_t chunks) {
  DecodeShape d{g_decode_variant, g_decode_spw, g_decode_cpc, g_decode_fold, g_decode_tail};
  const int64_t heads = M * hkv, work = heads * chunks, sms = sm_count();
  if (d.variant == kDecodeAuto) {
    if (2 * work <= sms) return {kDecodeTile4, 0, 0, 0, 0};
    if (2 * work < 3 * sms) return {kDecodeLegacy, 0, 0, 0, 0};
    d.variant = work >= 3 * sms && work < 6 * sms ? 4 : work >= 128 * sms ? 7 : 1;
  }
  if (d.fold <= 0) d.fold = 2;
  if (d.spw <= 0 && d.cpc <= 0) {
    if (work < 3 * sms) {
      d.cpc = 1;  // chunks per CTA: grow while >= 3 CTAs per SM remain
      auto ctas = [&](int64_t c) { return heads * ((chunks + c - 1) / c); };
      while (d.cpc < 16 && ctas(2 * d.cpc) >= 3 * sms) d.cpc *= 2;
    } else {
      d.spw = 4;
    }
  }
  if (d.cpc > 0) d.spw = 0;
  if (d.tail < 0) d.tail = work >= 24 * sms ? int((sms + heads - 1) / heads) : 0;
  return d;
}

void merge_chunk_partials(const attn::Params& p, int64_t dh, cudaStream_t st, bool may_stage);

template <int DH>
void launch(const attn::Params& base, bool fused, bool wgmma, int splits, cudaStream_t st) {
  constexpr int kPitch = DH + attn::kPad;
  attn::Params p = base;
  if (fused && wgmma) return launch_prefill_wgmma<DH>(p, st);
  if (fused) {
    switch (g_fused_config) {
      case 1:
        launch_fused<DH, 4, 2>(p, st);
        break;
      case 2:
        launch_fused<DH, 8, 2>(p, st);
        break;
      default:
        launch_fused<DH, 8, 4>(p, st);
        break;
    }
    return;
  }
  constexpr int smem = 4 * 2 * attn::kSubKeys * kPitch * 2;
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::stream_kernel<DH>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::split_kernel<DH, false>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::split_kernel<DH, true>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  });
  if (p.subtiles_per_warp == 1 && g_streaming) {
    // Chunks per CTA: speed only (each chunk's partial is computed the same way). Longer runs
    // let warps prefetch; keep >= ~2.7 waves of CTAs (3 per SM) for the tail.
    int cpc = 1;
    auto ctas = [&](int c) { return int64_t(p.M) * p.hkv * ((splits + c - 1) / c); };
    while (cpc < 16 && ctas(2 * cpc) >= 8 * sm_count()) cpc *= 2;
    BITEXACT_CUDA_CHECK(launch_pdl(attn::stream_kernel<DH>, dim3(unsigned(ctas(cpc))), dim3(128),
                                   smem, st, p, cpc));
  } else {
    dim3 grid(unsigned(int64_t(p.M) * p.hkv * splits));
    if (p.subtiles_per_warp == 1)
      BITEXACT_CUDA_CHECK(launch_pdl(attn::split_kernel<DH, false>, grid, dim3(128), smem, st, p));
    else
      BITEXACT_CUDA_CHECK(launch_pdl(attn::split_kernel<DH, true>, grid, dim3(128), smem, st, p));
  }
  BITEXACT_CUDA_CHECK_LAUNCH();
  if (splits > 1) merge_chunk_partials(p, DH, st, false);
}

int log2_exact(int64_t v) {
  int s = 0;
  while ((int64_t(1) << s) < v) ++s;
  return (int64_t(1) << s) == v ? s : -1;
}

// The decode grids' chunk partials: [M, hq, chunks] x (dh + 2) f32 in the shared workspace.
void bind_chunk_partials(attn::Params& p, int64_t chunks, int64_t dh, cudaStream_t st) {
  const int64_t M = p.M, hq = p.hq;
  float* ws = static_cast<float*>(ensure_workspace(partial_bytes(M, chunks, hq, dh), st));
  p.part_o = ws;
  p.part_ml = ws + M * hq * chunks * dh;
}

// Folds the chunk partials of every (token, q head) in chunk order: merge_chunks_kernel, or after
// the decode and tile4 grids (may_stage), for grids of fewer than 8 CTAs per SM,
// merge_chunks_staged_kernel (equal bits; speed only). H100, 2026-11-24, same calls: b8 x 1k / 4k /
// 16k 21.2 / 64.2 / 229.4 -> 20.4 / 62.4 / 217.6 us, b1 x 16k 46.1 -> 45.4; but after the legacy
// stream grid b1 x 4k 14.15 -> 14.8, so that one keeps merge_chunks_kernel; at batch 64 (2048
// CTAs) a build using it measured 1559 -> 1610 (not isolated), so large grids keep it too.
void merge_chunk_partials(const attn::Params& p, int64_t dh, cudaStream_t st, bool may_stage) {
  const dim3 grid(unsigned(p.M), unsigned(p.hq));
  const bool staged = may_stage && int64_t(p.M) * p.hq < 8 * int64_t(sm_count());
  // The staged kernel's 33 KB of static shared memory: ask for the carveout the decode grids
  // run with (all shared), meant to spare the SMs an L1 / shared reconfiguration between the two
  // kernels (the final build measured has it; its effect alone was not measured).
  static std::atomic<uint64_t> configured{0};
  once_per_device(configured, [] {
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::merge_chunks_staged_kernel<64>,
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             int(cudaSharedmemCarveoutMaxShared)));
    BITEXACT_CUDA_CHECK(cudaFuncSetAttribute(attn::merge_chunks_staged_kernel<128>,
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             int(cudaSharedmemCarveoutMaxShared)));
  });
  if (dh == 64)
    BITEXACT_CUDA_CHECK(
        launch_pdl(staged ? attn::merge_chunks_staged_kernel<64> : attn::merge_chunks_kernel<64>,
                   grid, dim3(64), 0, st, p));
  else
    BITEXACT_CUDA_CHECK(
        launch_pdl(staged ? attn::merge_chunks_staged_kernel<128> : attn::merge_chunks_kernel<128>,
                   grid, dim3(128), 0, st, p));
}

}  // namespace

void set_attention_path(AttentionPath path) { g_path = path; }
void set_attention_streaming(bool on) { g_streaming = on; }
void set_attention_fused_config(int config) { g_fused_config = config; }
void set_attention_wgmma_flat_merge(bool on) { g_wgmma_flat = on; }
void set_attention_decode(int variant, int spw, int cpc, int fold, int tail) {
  if (variant >= kNumDecodeVariants || variant < kDecodeTile4)
    fail(ErrorKind::kInvalidArgument,
         "set_attention_decode: no variant " + std::to_string(variant));
  if (spw < 0 || spw % 4 != 0 || cpc < 0 || (spw > 0 && cpc > 0) || fold < 0 || fold > 2 ||
      tail < -1)
    fail(ErrorKind::kInvalidArgument,
         "set_attention_decode: spw must be a multiple of 4, cpc >= 0, not both set; fold 0..2; "
         "tail >= -1");
  g_decode_tail = tail;
  g_decode_variant = variant;
  g_decode_spw = spw;
  g_decode_cpc = cpc;
  g_decode_fold = fold;
}
int attention_decode_variants() { return kNumDecodeVariants; }

void reserve_attention_workspace(int64_t tokens, int64_t max_positions, int64_t q_heads,
                                 int64_t head_dim) {
  const int64_t splits = (max_positions + kAttentionChunk - 1) / kAttentionChunk;
  ensure_workspace(partial_bytes(tokens, splits, q_heads, head_dim), nullptr);
  counters(true);
}

size_t attention_workspace_bytes() { return workspace().bytes; }

void attention(const ExecContext& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const AttentionMeta& meta, float scale, Tensor& out) {
  const int64_t M = q.dim(0), hq = q.dim(1), dh = q.dim(2), hkv = k_cache.dim(2);
  if (M == 0) return;
  if (q.dtype != DType::kBF16 || out.dtype != DType::kBF16 || k_cache.dtype != DType::kBF16 ||
      v_cache.dtype != DType::kBF16)
    unsupported("attention", "q, out and the KV caches must be BF16");
  if (dh != 64 && dh != 128)
    unsupported("attention", "head_dim must be 64 or 128, got " + std::to_string(dh));
  const int64_t group = hq / hkv;
  if (group > 16) unsupported("attention", "more than 16 query heads per kv head");
  const int shift = log2_exact(meta.block_size);
  if (shift < 0) unsupported("attention", "block_size must be a power of two");
  for (int i = 0; i < 3; ++i)
    if (k_cache.stride[i] != v_cache.stride[i] || k_cache.stride[i] % 8 != 0)
      unsupported("attention", "caches must share a layout with 16-byte aligned rows");
  if (k_cache.stride[3] != 1 || q.stride[2] != 1 || out.stride[2] != 1 || q.stride[0] % 2 ||
      q.stride[1] % 2)
    unsupported("attention", "head_dim must be contiguous, q rows 4-byte aligned");
  if (meta.max_positions <= 0) unsupported("attention", "meta.max_positions must be set");

  const int64_t chunks = (meta.max_positions + kAttentionChunk - 1) / kAttentionChunk;
  const int64_t num_seqs = meta.block_table.dim(0);
  cudaStream_t st = stream_of(ctx);

  // Batch-invariant: one chunk = 256 keys for every batch. Non-invariant: FlashDecoding-style,
  // grow the split while the grid still has >= 4 CTAs per SM: fewer partials for big batches.
  int spw = 1;
  if (!ctx.batch_invariant) {
    const int64_t ctas = M * hkv * chunks;
    while (spw < 16 && ctas / (2 * spw) >= 4 * sm_count()) spw *= 2;
  }
  const int64_t splits = (chunks + spw - 1) / spw;
  const size_t ws_bytes = partial_bytes(M, splits, hq, dh);
  constexpr size_t kSplitCap = size_t(512) << 20;

  // Which grid: speed only, both give the same bits. Fused when tokens share sequences (prefill)
  // and its grid fills the GPU, or when the split workspace would be too large.
  bool fused;
  if (g_path == AttentionPath::kSplit)
    fused = false;
  else if (g_path == AttentionPath::kFused || g_path == AttentionPath::kWgmma)
    fused = true;
  else {
    const int64_t tokens_per_cta = fused_rows(g_fused_config) / group;
    const int64_t fused_ctas = (M + tokens_per_cta - 1) / tokens_per_cta * hkv;
    // In either mode: the non-invariant baseline must not be slowed by a worse prefill grid.
    fused = M >= 2 * num_seqs && fused_ctas >= sm_count();
    if (ws_bytes > kSplitCap) fused = true;
  }
  if (fused && spw != 1) spw = 1;  // the fused grid is always the invariant chunking
  // Which prefill grid (speed only, equal bits): the wgmma grid unless the mma.sync one is forced.
  const bool wgmma = fused && g_path != AttentionPath::kFused;

  attn::Params p{};
  p.q = q.ptr<__nv_bfloat16>();
  p.q_s0 = q.stride[0];
  p.q_s1 = q.stride[1];
  p.k_cache = k_cache.ptr<__nv_bfloat16>();
  p.v_cache = v_cache.ptr<__nv_bfloat16>();
  p.c_s0 = k_cache.stride[0];
  p.c_s1 = k_cache.stride[1];
  p.c_s2 = k_cache.stride[2];
  p.token_seq = meta.token_seq.ptr<int32_t>();
  p.token_pos = meta.token_pos.ptr<int32_t>();
  p.block_table = meta.block_table.ptr<int32_t>();
  p.bt_s0 = meta.block_table.stride[0];
  p.block_shift = shift;
  p.out = out.ptr<__nv_bfloat16>();
  p.o_s0 = out.stride[0];
  p.o_s1 = out.stride[1];
  p.M = int(M);
  p.hq = int(hq);
  p.hkv = int(hkv);
  p.group = int(group);
  p.scale_log2 = float(double(scale) * 1.4426950408889634);
  p.max_splits = int(splits);
  p.subtiles_per_warp = spw;
  // The decode grid (invariant mode, split family): chunk partials folded by merge_chunks_kernel
  // or by the last CTA of each (token, kv head) to arrive, which needs the arrival counters
  // (allocated outside capture; without them merge_chunks_kernel folds). The legacy stream /
  // split grids stay selectable (same bits), serve the smallest grids and non-invariant mode.
  DecodeShape d = pick_decode(M, hkv, chunks);
  if (!fused && ctx.batch_invariant && d.variant == kDecodeTile4) {
    attn::DecodeArgs a{};
    a.max_units = int(chunks);
    if (chunks > 1) bind_chunk_partials(p, chunks, dh, st);
    if (dh == 64)
      launch_tile4<64>(p, a, st);
    else
      launch_tile4<128>(p, a, st);
    if (chunks > 1) merge_chunk_partials(p, dh, st, true);
    return;
  }
  if (!fused && ctx.batch_invariant && d.variant != kDecodeLegacy) {
    int* cnt = nullptr;
    if (d.fold == 1 && M * hkv <= kMaxCounters) cnt = counters(!capturing(st));
    if (!cnt) d.fold = 2;
    const DecodeVariant& var = kDecodeVariants[d.variant];
    const int warps = var.warps;
    attn::DecodeArgs a{};
    a.hpc = d.cpc > 0 ? warps / 4 : var.hpc;
    if (hkv % a.hpc != 0) a.hpc = 1;
    // Block-table entries a warp stages: keep the table within 16 KB per CTA.
    auto tab_cap = [&](int64_t keys) {
      return int((keys + meta.block_size - 1) / meta.block_size + 2);
    };
    while (d.spw % 8 == 0 && d.spw > 0 && tab_cap(d.spw * attn::kSubKeys) * warps * 4 > 16384)
      d.spw /= 2;
    while (d.cpc > 1 && tab_cap(int64_t(d.cpc) * kAttentionChunk) * warps * 4 > 16384) d.cpc /= 2;
    a.spw = d.spw;
    a.cpc = d.cpc;
    // The tail: the last d.tail chunks of every token, warp-chunk shape only, one chunk left at
    // least for the main region.
    const int64_t tail =
        d.cpc > 0 ? 0 : std::max<int64_t>(0, std::min<int64_t>(d.tail, chunks - 1));
    a.tail_k = int(chunks - tail);
    a.tail_ctas = int(tail);
    a.tail_hpc = hkv % (warps / 4) == 0 ? warps / 4 : 1;
    if (d.cpc > 0) {
      a.ctas_per_head = int((chunks + d.cpc - 1) / d.cpc);
      a.tab_cap = tab_cap(int64_t(d.cpc) * kAttentionChunk);
    } else {
      const int64_t cta_sub = int64_t(warps / a.hpc) * d.spw;
      a.ctas_per_head = int((4 * a.tail_k + cta_sub - 1) / cta_sub);
      a.tab_cap = std::max(tab_cap(int64_t(d.spw) * attn::kSubKeys),
                           tail > 0 ? tab_cap(kAttentionChunk) : 0);
    }
    a.main_ctas = int(M * (hkv / a.hpc) * a.ctas_per_head);
    a.max_units = int(chunks);
    if (a.hpc > 1 || tail > 0) d.fold = 2;  // the last-CTA fold: one kv head per CTA, no tail
    a.fold_kernel = d.fold == 2;
    a.counters = cnt;
    if (chunks > 1) bind_chunk_partials(p, chunks, dh, st);
    if (dh == 64)
      launch_decode<64>(d.variant, p, a, st);
    else
      launch_decode<128>(d.variant, p, a, st);
    if (a.fold_kernel && chunks > 1) merge_chunk_partials(p, dh, st, true);
    return;
  }
  if (!fused && splits > 1) {
    float* ws = static_cast<float*>(ensure_workspace(ws_bytes, st));
    p.part_o = ws;
    p.part_ml = ws + M * hq * splits * dh;
  }
  if (dh == 64)
    launch<64>(p, fused, wgmma, int(splits), st);
  else
    launch<128>(p, fused, wgmma, int(splits), st);
}

}  // namespace bitexact::ops::cuda
