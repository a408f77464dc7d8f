// Benchmark of CUDA attention on Qwen3-8B-like heads (32 q heads, 8 kv heads, head_dim 128,
// block 16): decode at batch 1/8/64 x context 1k/4k/16k (batch 1 also 2k, and the ~200-token
// context of a short chat) against the KV-bandwidth floor, and single-sequence prefill of
// 1k/4k/16k tokens. Prints one CSV line per case (see --help). Decode modes: "inv" = the
// automatic decode grid, "legacy" / "legacy-1chk" = the stream grid / one chunk per CTA with the
// merge kernel,
// "tile4" = attention_tile4.cuh's grid (4 warps per sub-tile, a cluster per chunk),
// "vV-sS-fF" / "vV-cC-fF" = decode variant V forced with S sub-tiles per warp / C chunks per
// CTA, fold F (--sweep), "noninv". Prefill modes: "inv" = the automatic grid, "wgmma" / "fused" =
// the wgmma prefill grid / the mma.sync fused grid (8 warps x 4 sub-tiles) forced, "inv-4w2s" /
// "inv-8w2s" = the other fused configurations, "split".
// Decode is timed as CUDA-graph replays over several KV copies, so that small caches are not
// served from L2; each number is the median of 7 timed replays.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "ops/cuda/attention_control.cuh"
#include "ops/cuda/bench/bench_entry.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

constexpr int kHq = 32, kHkv = 8, kDh = 128, kBs = 16;
constexpr double kBandwidth = 2.6e12;  // bytes/s: the decode floor's memory bandwidth

__global__ void fill_random(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 15, x *= 2246822519u, x ^= x >> 13, x *= 3266489917u, x ^= x >> 16;
    p[i] = __float2bfloat16_rn(float(int(x & 0xffff) - 32768) / 32768.0f);
  }
}

Tensor dev(Buffer& b, DType dt, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  b = Buffer(size_t(n) * dtype_size(dt), Device::kCuda);
  return b.as(dt, shape);
}

void randomize(const Tensor& t, uint32_t seed) {
  fill_random<<<1024, 256>>>(t.ptr<__nv_bfloat16>(), size_t(t.numel()), seed);
  BITEXACT_CUDA_CHECK_LAUNCH();
}

Tensor upload_i32(Buffer& b, const std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  Tensor t = dev(b, DType::kI32, shape);
  BITEXACT_CUDA_CHECK(cudaMemcpy(t.data, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `fn` (which enqueues work on `st`) captured into a graph: median of 7 replays, in us,
// divided by `per_replay` calls.
template <typename F>
double time_graph(cudaStream_t st, int per_replay, F&& fn) {
  fn();  // warm up (and grow the workspace outside capture)
  BITEXACT_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  BITEXACT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  fn();
  BITEXACT_CUDA_CHECK(cudaStreamEndCapture(st, &g));
  BITEXACT_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  BITEXACT_CUDA_CHECK(cudaEventCreate(&a));
  BITEXACT_CUDA_CHECK(cudaEventCreate(&b));
  BITEXACT_CUDA_CHECK(cudaGraphLaunch(ge, st));
  std::vector<double> t;
  for (int i = 0; i < 7; ++i) {
    BITEXACT_CUDA_CHECK(cudaEventRecord(a, st));
    BITEXACT_CUDA_CHECK(cudaGraphLaunch(ge, st));
    BITEXACT_CUDA_CHECK(cudaEventRecord(b, st));
    BITEXACT_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BITEXACT_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1e3 / per_replay);
  }
  BITEXACT_CUDA_CHECK(cudaGraphExecDestroy(ge));
  BITEXACT_CUDA_CHECK(cudaGraphDestroy(g));
  return median(t);
}

// A decode grid to time: kDecodeAuto, kDecodeLegacy (with `streaming`) or a forced variant.
struct DecodeCfg {
  int variant, spw, cpc, fold;
  bool streaming;
  int tail = -1;
};

// Decode: `batch` sequences of `ctx` keys each, one query token per sequence. `copies` disjoint
// sets of blocks (each with its own block table) rotate so the cache is read from HBM.
void bench_decode(cudaStream_t st, int batch, int ctx, bool invariant,
                  const std::vector<DecodeCfg>& cfgs) {
  const int64_t blocks_per_seq = (ctx + kBs - 1) / kBs;
  const double kv_bytes = 2.0 * batch * ctx * kHkv * kDh * 2;
  const int copies = int(std::clamp(256e6 / kv_bytes, 1.0, 512.0));  // >= 256 MB: past L2
  const int64_t num_blocks = blocks_per_seq * batch * copies;
  Buffer bk, bv, bq, bo, bseq, bpos;
  Tensor kc = dev(bk, DType::kBF16, {num_blocks, kBs, kHkv, kDh});
  Tensor vc = dev(bv, DType::kBF16, {num_blocks, kBs, kHkv, kDh});
  Tensor q = dev(bq, DType::kBF16, {batch, kHq, kDh}),
         out = dev(bo, DType::kBF16, {batch, kHq, kDh});
  randomize(kc, 1), randomize(vc, 2), randomize(q, 3);
  std::vector<int32_t> seq(batch), pos(batch, ctx - 1);
  for (int i = 0; i < batch; ++i) seq[i] = i;
  Tensor tseq = upload_i32(bseq, seq, {batch}), tpos = upload_i32(bpos, pos, {batch});
  std::vector<Buffer> tables(copies);
  std::vector<Tensor> table_t;
  for (int c = 0; c < copies; ++c) {
    std::vector<int32_t> t(size_t(batch * blocks_per_seq));
    for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t(c * batch * blocks_per_seq + int64_t(i));
    table_t.push_back(upload_i32(tables[c], t, {batch, blocks_per_seq}));
  }
  ExecContext x;
  x.device = Device::kCuda;
  x.stream = st;
  x.batch_invariant = invariant;
  const float scale = 0.08838834764831845f;
  const double floor_us = kv_bytes / kBandwidth * 1e6;
  for (const DecodeCfg& cfg : cfgs) {
    cuda::set_attention_streaming(cfg.streaming);
    cuda::set_attention_decode(cfg.variant, cfg.spw, cfg.cpc, cfg.fold, cfg.tail);
    const double us = time_graph(st, copies, [&] {
      for (int c = 0; c < copies; ++c) {
        AttentionMeta meta{tseq, tpos, table_t[c], kBs, ctx};
        cuda::attention(x, q, kc, vc, meta, scale, out);
      }
    });
    cuda::set_attention_streaming(true);
    cuda::set_attention_decode(cuda::kDecodeAuto);
    char mode[48];
    if (!invariant)
      std::snprintf(mode, sizeof mode, "noninv");
    else if (cfg.variant == cuda::kDecodeAuto)
      std::snprintf(mode, sizeof mode, "inv");
    else if (cfg.variant == cuda::kDecodeTile4)
      std::snprintf(mode, sizeof mode, "tile4");
    else if (cfg.variant == cuda::kDecodeLegacy)
      std::snprintf(mode, sizeof mode, cfg.streaming ? "legacy" : "legacy-1chk");
    else if (cfg.cpc > 0)
      std::snprintf(mode, sizeof mode, "v%d-c%d-f%d", cfg.variant, cfg.cpc, cfg.fold);
    else if (cfg.tail >= 0)
      std::snprintf(mode, sizeof mode, "v%d-s%d-f%d-t%d", cfg.variant, cfg.spw, cfg.fold, cfg.tail);
    else
      std::snprintf(mode, sizeof mode, "v%d-s%d-f%d", cfg.variant, cfg.spw, cfg.fold);
    std::printf("decode,%s,%d,%d,%.2f,%.2f,%.3f\n", mode, batch, ctx, us, floor_us, floor_us / us);
    std::fflush(stdout);
  }
}

// Prefill: one sequence of `len` tokens, all at once (causal), timed as graph replays too.
void bench_prefill(cudaStream_t st, int len, cuda::AttentionPath path, int fused_config = 0) {
  const int64_t blocks = (len + kBs - 1) / kBs;
  Buffer bk, bv, bq, bo, bseq, bpos, btab;
  Tensor kc = dev(bk, DType::kBF16, {blocks, kBs, kHkv, kDh});
  Tensor vc = dev(bv, DType::kBF16, {blocks, kBs, kHkv, kDh});
  Tensor q = dev(bq, DType::kBF16, {len, kHq, kDh}), out = dev(bo, DType::kBF16, {len, kHq, kDh});
  randomize(kc, 4), randomize(vc, 5), randomize(q, 6);
  std::vector<int32_t> seq(len, 0), pos(len), tab(blocks);
  for (int i = 0; i < len; ++i) pos[i] = i;
  for (int64_t i = 0; i < blocks; ++i) tab[i] = int32_t(i);
  Tensor tseq = upload_i32(bseq, seq, {len}), tpos = upload_i32(bpos, pos, {len});
  Tensor ttab = upload_i32(btab, tab, {1, blocks});
  ExecContext x;
  x.device = Device::kCuda;
  x.stream = st;
  AttentionMeta meta{tseq, tpos, ttab, kBs, len};
  cuda::set_attention_path(path);
  cuda::set_attention_fused_config(fused_config);
  const double us =
      time_graph(st, 1, [&] { cuda::attention(x, q, kc, vc, meta, 0.0883883f, out); });
  cuda::set_attention_path(cuda::AttentionPath::kAuto);
  cuda::set_attention_fused_config(0);
  const double flops = 4.0 * double(len) * (double(len) + 1) / 2 * kHq * kDh;
  const char* mode = path == cuda::AttentionPath::kSplit ? "split"
                     : path == cuda::AttentionPath::kWgmma ? "wgmma"
                     : fused_config == 1                 ? "inv-4w2s"
                     : fused_config == 2                 ? "inv-8w2s"
                     : path == cuda::AttentionPath::kFused ? "fused"
                                                         : "inv";
  std::printf("prefill,%s,1,%d,%.2f,%.1f,0\n", mode, len, us, flops / (us * 1e-6) / 1e12);
  std::fflush(stdout);
}

}  // namespace

// "a:b:c:d;..." -> rows of ints (a malformed list is an error, not a silent default).
std::vector<std::vector<int>> parse_rows(const char* s, size_t width) {
  std::vector<std::vector<int>> rows(1);
  for (const char* c = s; *c;) {
    char* end = nullptr;
    rows.back().push_back(int(std::strtol(c, &end, 10)));
    if (end == c) fail(ErrorKind::kInvalidArgument, std::string("bench_attention: bad list ") + s);
    c = end;
    if (*c == ':')
      ++c;
    else if (*c == ';' || *c == ',')
      ++c, rows.emplace_back();
  }
  for (const auto& r : rows)
    if (r.size() != width)
      fail(ErrorKind::kInvalidArgument, std::string("bench_attention: bad list ") + s);
  return rows;
}

int BITEXACT_BENCH_ENTRY(bench_attention)(int argc, char** argv) {
  bool sweep = false, decode_only = false, prefill_only = false;
  std::vector<std::vector<int>> forced, only_points;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf(
          "bench_attention [--sweep] [--decode-only] [--prefill-only] [--configs V:S:C:F:T;...] "
          "[--points B:CTX;...]: CSV lines kind,mode,batch,ctx,us,floor_us|tflops,floor_fraction\n"
          "  --sweep: also decode variants 1,4,5 x (a chunk per warp | 1, 2 chunks per CTA) x "
          "fold 1,2\n"
          "  --configs: decode only, and only the automatic grid and these forced ones\n"
          "    (variant V, -2 legacy, -3 tile4; S sub-tiles per warp, C chunks per CTA, fold F,\n"
          "    tail T), as in set_attention_decode\n"
          "  --points: only these decode points (batch B, context CTX)\n");
      return 0;
    }
    sweep |= std::strcmp(argv[i], "--sweep") == 0;
    decode_only |= std::strcmp(argv[i], "--decode-only") == 0;
    prefill_only |= std::strcmp(argv[i], "--prefill-only") == 0;
    if (std::strcmp(argv[i], "--configs") == 0 && i + 1 < argc) forced = parse_rows(argv[++i], 5);
    if (std::strcmp(argv[i], "--points") == 0 && i + 1 < argc)
      only_points = parse_rows(argv[++i], 2);
  }
  const bool custom = !forced.empty() || !only_points.empty();
  if (custom) decode_only = true;
  cuda::init_cuda_backend(0);
  cudaStream_t st;
  BITEXACT_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  std::printf("kind,mode,batch,ctx,us,floor_us_or_tflops,floor_fraction\n");
  const std::pair<int, int> points[] = {{1, 200},   {8, 200},   {1, 1024},  {1, 2048},
                                        {1, 4096},  {1, 16384}, {8, 1024},  {8, 4096},
                                        {8, 16384}, {64, 1024}, {64, 4096}, {64, 16384}};
  std::vector<std::pair<int, int>> todo(std::begin(points), std::end(points));
  if (!only_points.empty()) {
    todo.clear();
    for (const auto& r : only_points) todo.push_back({r[0], r[1]});
  }
  for (auto [batch, ctx] : todo) {
    if (prefill_only) break;
    std::vector<DecodeCfg> cfgs = {{cuda::kDecodeAuto, 0, 0, 0, true}};
    if (!custom) {
      cfgs.push_back({cuda::kDecodeLegacy, 0, 0, 0, true});
      cfgs.push_back({cuda::kDecodeTile4, 0, 0, 0, true});
      if (ctx == 16384) cfgs.push_back({cuda::kDecodeLegacy, 0, 0, 0, false});
    }
    for (const auto& r : forced) cfgs.push_back({r[0], r[1], r[2], r[3], true, r[4]});
    if (sweep)
      for (int v : {1, 4, 5})
        for (int fold : {1, 2}) {
          cfgs.push_back({v, 4, 0, fold, true});
          for (int cpc : {1, 2}) cfgs.push_back({v, 0, cpc, fold, true});
        }
    bench_decode(st, batch, ctx, true, cfgs);
  }
  for (int batch : {1, 64})
    for (int ctx : {4096, 16384}) {
      if (prefill_only || custom) break;
      bench_decode(st, batch, ctx, false, {{cuda::kDecodeAuto, 0, 0, 0, true}});
    }
  if (!decode_only) {
    for (int len : {1024, 4096, 16384}) bench_prefill(st, len, cuda::AttentionPath::kAuto);
    for (int len : {1024, 4096, 16384}) bench_prefill(st, len, cuda::AttentionPath::kWgmma);
    for (int len : {1024, 4096, 16384}) bench_prefill(st, len, cuda::AttentionPath::kFused);
    for (int config : {1, 2})
      for (int len : {1024, 4096, 16384})
        bench_prefill(st, len, cuda::AttentionPath::kFused, config);
    bench_prefill(st, 1024, cuda::AttentionPath::kSplit);
  }
  BITEXACT_CUDA_CHECK(cudaStreamDestroy(st));
  return 0;
}
