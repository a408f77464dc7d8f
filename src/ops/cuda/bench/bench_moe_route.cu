// Benchmark of the small MoE ops around the expert GEMMs at decode sizes, on the 30B-A3B shape
// (128 experts, top-8, hidden 2048): routing on the split path (routing grid + grouping CTA) vs
// the one-launch path, and moe_combine + add_rms_norm vs moe_combine_add_rms_norm, for M tokens.
// Each number is the time per call of 100 calls captured in a CUDA graph (median of 7 replays),
// so launch gaps inside a graph are included as in a captured decode step. One CSV line per case.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/moe_route.h"

using namespace bitexact;
using namespace bitexact::ops;

namespace {

constexpr int64_t kE = 128, kK = 8, kH = 2048;
constexpr int kCalls = 100;

Tensor dev(Buffer& b, DType dt, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  b = Buffer(size_t(std::max<int64_t>(n, 1)) * dtype_size(dt), Device::kCuda);
  return b.as(dt, shape);
}

// Microseconds per call of fn, captured kCalls times into one graph.
double time_us(const ExecContext& ctx, const std::function<void()>& fn) {
  fn();  // warm-up outside the capture (kernel attributes)
  ops::synchronize(ctx);
  cuda::graph_begin_capture(ctx);
  for (int i = 0; i < kCalls; ++i) fn();
  void* exec = cuda::graph_end_capture(ctx);
  cudaEvent_t a, b;
  BITEXACT_CUDA_CHECK(cudaEventCreate(&a));
  BITEXACT_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> us;
  for (int rep = 0; rep < 8; ++rep) {
    BITEXACT_CUDA_CHECK(cudaEventRecord(a, cuda::stream_of(ctx)));
    cuda::graph_launch(ctx, exec);
    BITEXACT_CUDA_CHECK(cudaEventRecord(b, cuda::stream_of(ctx)));
    BITEXACT_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BITEXACT_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    if (rep > 0) us.push_back(double(ms) * 1e3 / kCalls);
  }
  cuda::graph_destroy(exec);
  BITEXACT_CUDA_CHECK(cudaEventDestroy(a));
  BITEXACT_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main() {
  cuda::init_cuda_backend(0);
  ExecContext ctx;
  ctx.device = Device::kCuda;
  ctx.stream = cuda::create_stream();
  std::printf("op,M,path,us_per_call\n");
  for (const int64_t M : {1, 2, 4, 8, 16, 32, 64, 128}) {
    Buffer bl, bi, bw, bg, by, bres, bout, btmp, bnw;
    Tensor logits = dev(bl, DType::kBF16, {M, kE});
    ops::fill_uniform(ctx, logits, 1, 4.0f, 0.0f);
    MoeRouting r;
    r.expert_ids = dev(bi, DType::kI32, {M, kK});
    r.weights = dev(bw, DType::kF32, {M, kK});
    r.groups = dev(bg, DType::kI32, {moe_groups_len(M * kK, kE)});
    r.num_experts = kE;
    for (const auto path : {cuda::MoeRoutePath::kSplit, cuda::MoeRoutePath::kFused}) {
      if (path == cuda::MoeRoutePath::kFused && !cuda::moe_route_fused(M, kE, kK)) continue;
      const double us = time_us(ctx, [&] { cuda::moe_route_path(ctx, logits, true, r, path); });
      std::printf("moe_route,%lld,%s,%.2f\n", (long long)M,
                  path == cuda::MoeRoutePath::kFused ? "fused" : "split", us);
    }
    Tensor y = dev(by, DType::kBF16, {M * kK, kH});
    Tensor res = dev(bres, DType::kBF16, {M, kH}), out = dev(bout, DType::kBF16, {M, kH});
    Tensor tmp = dev(btmp, DType::kBF16, {M, kH}), nw = dev(bnw, DType::kBF16, {kH});
    ops::fill_uniform(ctx, y, 2, 1.0f, 0.0f);
    ops::fill_uniform(ctx, res, 3, 1.0f, 0.0f);
    ops::fill_uniform(ctx, nw, 4, 0.5f, 1.0f);
    const double two = time_us(ctx, [&] {
      ops::moe_combine(ctx, y, r, tmp);
      ops::add_rms_norm(ctx, res, tmp, nw, 1e-6f, out);
    });
    const double one =
        time_us(ctx, [&] { ops::moe_combine_add_rms_norm(ctx, y, r, res, nw, 1e-6f, out); });
    std::printf("combine+add_rms_norm,%lld,two_ops,%.2f\n", (long long)M, two);
    std::printf("combine+add_rms_norm,%lld,fused,%.2f\n", (long long)M, one);
  }
  cuda::destroy_stream(ctx.stream);
  return 0;
}
