// bench_gemm: the batch-invariant GEMM (ops::cuda::linear) against cuBLASLt's default heuristic
// on every Qwen3 weight shape and M in 1..4096, with the copy and matmul ceilings measured in the
// same run. Usage: bench_gemm [OUT_PREFIX] [--paths] [--tune] [--only SHAPE[,SHAPE..]]
// [--m M[,M..]]  (writes OUT_PREFIX.csv, .md, and with --tune OUT_PREFIX_tune.csv: decode-size
// split-K variants, see gemm/linear_tune.cuh).
// --paths adds csv rows for every forced path and, at M >= 32, every wgmma tile (wgmma_<tile>);
// --tiles does the wgmma tiles only (no forced mma.sync paths); --v4 adds rows "v4_auto": the
// auto rule without the split-K tiles (set_wgmma_split_auto(false)), timed in the same run;
// --v5 adds rows "v5_auto" (the rule without the v6 TMA-store epilogue tiles) and "v6_auto" (with
// them), both in the same run; --v6 adds rows "v6_auto" (the session-4 rule:
// set_wgmma_v7_auto(false)) and "v7_auto" (the current rule), same run, with the tile each took;
// --tilelist NAME[,NAME..] limits --tiles to these wgmma tiles.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ops/cuda/bench/bench_entry.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/gemm/linear_tune.cuh"
#include "ops/cuda/gemm/wgmma_launch.cuh"
#include "ops/cuda/linear_cuda.cuh"

using namespace bitexact;
using namespace bitexact::ops::cuda::linear_detail;

namespace {

constexpr int kLaunchesPerGraph = 20;
constexpr int kRepeats = 9;
constexpr size_t kRotateBytes = size_t(256) << 20;  // > 5x the 50 MB L2: weights come from HBM

struct Shape {
  const char* name;
  int64_t N, K;
};
const Shape kShapes[] = {
    {"0.6B qkv", 4096, 1024},    {"0.6B o", 1024, 2048},        {"0.6B gate_up", 6144, 1024},
    {"0.6B down", 1024, 3072},   {"1.7B qkv", 4096, 2048},      {"1.7B o", 2048, 2048},
    {"1.7B gate_up", 12288, 2048}, {"1.7B down", 2048, 6144},   {"8B qkv", 6144, 4096},
    {"8B o", 4096, 4096},        {"8B gate_up", 24576, 4096},   {"8B down", 4096, 12288},
    {"30B qkv", 5120, 2048},     {"30B o", 2048, 4096},         {"0.6B lm_head", 151936, 1024},
    {"8B lm_head", 151936, 4096}};
const int64_t kMs[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

Tensor dev_matrix(void* p, int64_t rows, int64_t cols) {
  Tensor t;
  t.data = p;
  t.dtype = DType::kBF16;
  t.device = Device::kCuda;
  t.ndim = 2;
  t.shape = {rows, cols, 0, 0};
  t.stride = {cols, 1, 0, 0};
  return t;
}

__global__ void fill_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t z = uint32_t(i) * 2654435761u ^ seed;
    z ^= z >> 15;
    z *= 2246822519u;
    z ^= z >> 13;
    float f = float(int(z >> 8) - (1 << 23)) / float(1 << 23);
    p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
}

void* dev_alloc_random(size_t elems, uint32_t seed) {
  void* p = nullptr;
  LINEAR_CUDA_CHECK(cudaMalloc(&p, elems * 2));
  fill_kernel<<<2048, 256>>>(static_cast<uint16_t*>(p), elems, seed);
  LINEAR_CUDA_CHECK(cudaGetLastError());
  return p;
}

// Median time of one call (us): a graph of kLaunchesPerGraph calls, each on the next weight
// buffer, replayed kRepeats times after warm-up and timed with events.
template <typename F>
double time_graph(cudaStream_t stream, F&& call) {
  for (int i = 0; i < kLaunchesPerGraph; ++i) call(i);  // warm-up, sizes workspaces
  LINEAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  LINEAR_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < kLaunchesPerGraph; ++i) call(i);
  LINEAR_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  LINEAR_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 2; ++i) cudaGraphLaunch(exec, stream);
  std::vector<float> times;
  for (int r = 0; r < kRepeats; ++r) {
    cudaEventRecord(e0, stream);
    cudaGraphLaunch(exec, stream);
    cudaEventRecord(e1, stream);
    LINEAR_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return times[times.size() / 2] * 1000.0 / kLaunchesPerGraph;
}

}  // namespace

int BITEXACT_BENCH_ENTRY(bench_gemm)(int argc, char** argv) {
  std::string prefix = argc > 1 ? argv[1] : "bench_gemm";
  bool all_paths = false, tune = false, tiles_only = false, v4 = false, v5 = false, v6 = false;
  std::string tile_list;  // --tilelist: the wgmma tiles that --tiles times (empty: all)
  std::string only;    // --only NAME[,NAME..]: these shapes (for profiling)
  std::string only_m;  // --m M[,M..]: these M
  for (int i = 2; i < argc; ++i) {
    all_paths |= std::strcmp(argv[i], "--paths") == 0;
    tiles_only |= std::strcmp(argv[i], "--tiles") == 0;
    v4 |= std::strcmp(argv[i], "--v4") == 0;
    v5 |= std::strcmp(argv[i], "--v5") == 0;
    v6 |= std::strcmp(argv[i], "--v6") == 0;
    if (std::strcmp(argv[i], "--tilelist") == 0 && i + 1 < argc) tile_list = argv[++i];
    tune |= std::strcmp(argv[i], "--tune") == 0;
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    if (std::strcmp(argv[i], "--m") == 0 && i + 1 < argc) only_m = argv[++i];
  }
  all_paths |= tiles_only;
  // Comma-separated list membership (an empty list takes everything).
  auto listed = [](const std::string& list, const std::string& item) {
    if (list.empty()) return true;
    size_t b = 0;
    while (b <= list.size()) {
      size_t e = list.find(',', b);
      if (e == std::string::npos) e = list.size();
      if (list.compare(b, e - b, item) == 0) return true;
      b = e + 1;
    }
    return false;
  };
  cudaStream_t stream;
  LINEAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaDeviceProp prop{};
  LINEAR_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  // Ceilings of this device, this run: a 1 GiB device-to-device copy (bytes read + written) and
  // cuBLASLt's 8192^3 bf16 matmul.
  const size_t copy_bytes = size_t(1) << 30;
  void *src, *dst;
  LINEAR_CUDA_CHECK(cudaMalloc(&src, copy_bytes));
  LINEAR_CUDA_CHECK(cudaMalloc(&dst, copy_bytes));
  double copy_us = time_graph(stream, [&](int) {
    LINEAR_CUDA_CHECK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, stream));
  });
  cudaFree(src);
  cudaFree(dst);
  const double copy_bw = 2.0 * copy_bytes / (copy_us * 1e-6);
  const int64_t B = 8192;
  void* bx = dev_alloc_random(B * B, 1);
  void* bw = dev_alloc_random(B * B, 2);
  void* by = dev_alloc_random(B * B, 3);
  ops::ExecContext lt_ctx{Device::kCuda, false, nullptr, stream};
  Tensor tbx = dev_matrix(bx, B, B), tbw = dev_matrix(bw, B, B), tby = dev_matrix(by, B, B);
  double big_us = time_graph(stream, [&](int) { linear_cublaslt(lt_ctx, tbx, tbw, tby); });
  cudaFree(bx);
  cudaFree(bw);
  cudaFree(by);
  const double peak = 2.0 * B * B * B / (big_us * 1e-6);
  std::printf("device %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  std::printf("copy ceiling %.2f TB/s, cuBLASLt 8192^3 bf16 %.1f TFLOP/s\n", copy_bw / 1e12,
              peak / 1e12);

  FILE* csv = std::fopen((prefix + ".csv").c_str(), "w");
  FILE* md = std::fopen((prefix + ".md").c_str(), "w");
  std::fprintf(csv, "shape,N,K,M,kc,S,path,ours_us,cublas_us,speed_vs_cublas,floor_us,"
                    "frac_of_floor,cublas_frac_of_floor\n");
  std::fprintf(md, "copy ceiling %.2f TB/s; cuBLASLt 8192^3 %.1f TFLOP/s; %s\n\n"
                   "| shape | M | path | ours us | cuBLASLt us | cuBLAS/ours | floor us | "
                   "ours %% floor |\n|---|---|---|---|---|---|---|---|\n",
               copy_bw / 1e12, peak / 1e12, prop.name);
  std::printf("%-13s %5s %-12s %9s %9s %6s %8s %6s\n", "shape", "M", "path", "ours_us",
              "cublas_us", "speed", "floor_us", "%floor");
  FILE* tune_csv = tune ? std::fopen((prefix + "_tune.csv").c_str(), "w") : nullptr;
  if (tune_csv) std::fprintf(tune_csv, "shape,N,K,M,kc,S,variant,us\n");
  int misses = 0, rows = 0;
  for (const Shape& s : kShapes) {
    if (!listed(only, s.name)) continue;
    const size_t w_elems = size_t(s.N) * s.K;
    const int n_buf =
        int(std::clamp<size_t>((kRotateBytes + w_elems * 2 - 1) / (w_elems * 2), 2, 20));
    std::vector<void*> ws;
    for (int i = 0; i < n_buf; ++i) ws.push_back(dev_alloc_random(w_elems, 100 + i));
    void* x = dev_alloc_random(4096 * s.K, 7);
    void* y = dev_alloc_random(4096 * s.N, 8);
    LinearPlan plan = linear_plan(s.N, s.K);
    if (tune_csv)
      ops::cuda::linear_tune::run_tune(
          tune_csv, s.name, s.N, s.K, x, y, [&](int i) { return ws[i % n_buf]; }, stream,
          [&](auto&& call) { return time_graph(stream, call); });
    for (int64_t M : kMs) {
      if (!listed(only_m, std::to_string(M))) continue;
      Tensor tx = dev_matrix(x, M, s.K), ty = dev_matrix(y, M, s.N);
      auto run = [&](LinearPath path, bool invariant) {
        ops::ExecContext ctx{Device::kCuda, invariant, nullptr, stream};
        return time_graph(stream, [&](int i) {
          Tensor tw = dev_matrix(ws[i % n_buf], s.N, s.K);
          if (invariant) linear_invariant(ctx, tx, tw, ty, path);
          else linear_cublaslt(ctx, tx, tw, ty);
        });
      };
      double ours = run(LinearPath::kAuto, true), lt = run(LinearPath::kAuto, false);
      double bytes = 2.0 * (w_elems + M * s.K + M * s.N);
      double floor_us = std::max(bytes / copy_bw, 2.0 * M * s.N * s.K / peak) * 1e6;
      double speed = lt / ours;
      misses += speed < 0.9;
      ++rows;
      const LinearPath auto_path = linear_auto_path(M, s.N, s.K);
      // wgmma: the tile name (e.g. "wgmma:64x64s") so that the split tiles show.
      const std::string path_name =
          auto_path == LinearPath::kWgmma
              ? std::string("wgmma:") + wgmma_tile_name(wgmma_auto_tile(M, s.N, s.K, plan.S))
              : linear_path_name(auto_path);
      const char* path = path_name.c_str();
      std::printf("%-13s %5lld %-12s %9.2f %9.2f %6.2f %8.2f %5.0f%%%s\n", s.name,
                  (long long)M, path, ours, lt, speed, floor_us, 100 * floor_us / ours,
                  speed < 0.9 ? "  <0.9" : "");
      std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", s.name,
                   (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S, path, ours, lt,
                   speed, floor_us, floor_us / ours, floor_us / lt);
      std::fprintf(md, "| %s | %lld | %s | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n", s.name,
                   (long long)M, path, ours, lt, speed, floor_us, 100 * floor_us / ours);
      if (v4) {  // the v4 rule (no split-K wgmma tiles) in the same run
        set_wgmma_split_auto(false);
        const double t = run(LinearPath::kAuto, true);
        set_wgmma_split_auto(true);
        std::printf("%-13s %5lld %-12s %9.2f %9.2f %6.2f\n", s.name, (long long)M, "v4_auto", t,
                    lt, lt / t);
        std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,v4_auto,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n",
                     s.name, (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S, t, lt,
                     lt / t, floor_us, floor_us / t, floor_us / lt);
      }
      if (v5) {  // the rule without (v5) and with (v6) the TMA-store epilogue tiles, same run
        for (const bool on : {false, true}) {
          set_wgmma_tma_store_auto(on);
          const double t = run(LinearPath::kAuto, true);
          const char* name = on ? "v6_auto" : "v5_auto";
          const std::string tn =
              auto_path == LinearPath::kWgmma
                  ? std::string("wgmma:") + wgmma_tile_name(wgmma_auto_tile(M, s.N, s.K, plan.S))
                  : linear_path_name(auto_path);
          std::printf("%-13s %5lld %-12s %9.2f %9.2f %6.2f %s\n", s.name, (long long)M, name, t,
                      lt, lt / t, tn.c_str());
          std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", s.name,
                       (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S, name, t, lt,
                       lt / t, floor_us, floor_us / t, floor_us / lt);
        }
        set_wgmma_tma_store_auto(true);  // the default again (the lines above left it off)
      }
      if (v6) {  // the session-4 rule (v6) and the current one (v7), same run
        for (const bool on : {false, true}) {
          set_wgmma_v7_auto(on);
          const double t = run(LinearPath::kAuto, true);
          const char* name = on ? "v7_auto" : "v6_auto";
          const LinearPath ap = linear_auto_path(M, s.N, s.K);
          const std::string tn =
              ap == LinearPath::kWgmma
                  ? std::string("wgmma:") + wgmma_tile_name(wgmma_auto_tile(M, s.N, s.K, plan.S))
                  : linear_path_name(ap);
          std::printf("%-13s %5lld %-12s %9.2f %9.2f %6.2f %s\n", s.name, (long long)M, name, t,
                      lt, lt / t, tn.c_str());
          std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,%s:%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", s.name,
                       (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S, name,
                       tn.c_str(), t, lt, lt / t, floor_us, floor_us / t, floor_us / lt);
        }
      }
      if (all_paths && !tiles_only) {  // every forced path, to tune linear_auto_path (bits are equal anyway)
        for (LinearPath p : {LinearPath::kSmallSplit, LinearPath::kSmallFused,
                             LinearPath::kMedium, LinearPath::kLarge, LinearPath::kSmallWide,
                             LinearPath::kWgmma}) {
          // The mma.sync paths never win past M = 512 (the wgmma path does, docs/notes/gemm.md).
          if (p != LinearPath::kWgmma && M > 512) continue;
          if (p == LinearPath::kWgmma && M < 16) continue;
          double t = run(p, true);
          std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,forced_%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n",
                       s.name, (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S,
                       linear_path_name(p), t, lt, lt / t, floor_us, floor_us / t, floor_us / lt);
        }
      }
      if (all_paths && M >= 32) {  // every wgmma tile (bits equal by linear_wgmma_test)
        for (WgmmaTile tile :
             {WgmmaTile::k128x128, WgmmaTile::k128x256, WgmmaTile::k64x128, WgmmaTile::k128x64,
              WgmmaTile::k128x192, WgmmaTile::k128x256c2, WgmmaTile::k128x192c2,
              WgmmaTile::k128x128c2, WgmmaTile::k128x128s, WgmmaTile::k64x128s,
              WgmmaTile::k128x64s, WgmmaTile::k64x64s, WgmmaTile::k128x256t, WgmmaTile::k128x256t3,
              WgmmaTile::k128x192t, WgmmaTile::k128x128t, WgmmaTile::k64x128t,
              WgmmaTile::k128x64t, WgmmaTile::k64x64t}) {
          if (!listed(tile_list, wgmma_tile_name(tile))) continue;
          const bool wide = wgmma_tile_is_wide(tile);
          const bool narrow = tile == WgmmaTile::k64x128 || tile == WgmmaTile::k128x64 ||
                              tile == WgmmaTile::k64x128t || tile == WgmmaTile::k128x64t ||
                              tile == WgmmaTile::k64x64t;
          const bool split = wgmma_tile_is_split(tile);
          if ((wide && plan.S > 1) || (narrow && M > 1024)) continue;
          // Split tiles: only where they can help (several chunks, few output tiles).
          if (split && (plan.S == 1 || M > 1024)) continue;
          double t = time_graph(stream, [&](int i) {
            LinearParams p{};
            p.x = static_cast<const __nv_bfloat16*>(x);
            p.w = static_cast<const __nv_bfloat16*>(ws[i % n_buf]);
            p.y = static_cast<__nv_bfloat16*>(y);
            p.ldx = s.K;
            p.ldy = s.N;
            p.M = int(M);
            p.N = int(s.N);
            p.K = int(s.K);
            p.kc = plan.kc;
            p.S = plan.S;
            launch_wgmma(p, stream, tile);
          });
          std::fprintf(csv, "%s,%lld,%lld,%lld,%d,%d,wgmma_%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n",
                       s.name, (long long)s.N, (long long)s.K, (long long)M, plan.kc, plan.S,
                       wgmma_tile_name(tile), t, lt, lt / t, floor_us, floor_us / t, floor_us / lt);
        }
      }
      std::fflush(csv);
    }
    for (void* p : ws) cudaFree(p);
    cudaFree(x);
    cudaFree(y);
  }
  std::printf("%d of %d (shape, M) points below 0.9x cuBLASLt\n", misses, rows);
  std::fclose(csv);
  std::fclose(md);
  if (tune_csv) std::fclose(tune_csv);
  return 0;
}
