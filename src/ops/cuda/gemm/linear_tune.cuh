// Decode-size tuning sweep for bench_gemm --tune: times the split-K kernel with other chunk
// lengths (kc), tile widths and pipeline depths than linear_plan/linear.cu use, to choose them.
// Each (kc) is a different reduction order, so this is for picking the plan, not for serving.
#pragma once

#include <atomic>
#include <cstdio>
#include <vector>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/linear_cuda.cuh"
#include "ops/cuda/linear_kernel.cuh"

namespace bitexact::ops::cuda::linear_tune {

using namespace linear_detail;

struct TuneBuffers {
  float* partial = nullptr;
  int* counters = nullptr;
};

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
void launch_split(LinearParams p, const TuneBuffers& b, cudaStream_t stream) {
  constexpr int smem = linear_smem_bytes<BM, BN, BK, STAGES, true>();
  auto kernel = linear_bf16_kernel<BM, BN, BK, WM, WN, STAGES, true>;
  static std::atomic<uint64_t> attr_set{0};
  allow_dynamic_smem(kernel, smem, attr_set);
  p.partial = b.partial;
  p.counters = b.counters;
  dim3 grid(unsigned((p.N + BN - 1) / BN), unsigned(p.S), unsigned((p.M + BM - 1) / BM));
  LINEAR_CUDA_CHECK(launch_pdl(kernel, grid, dim3(WM * WN * 32), smem, stream, p));
}

struct Variant {
  const char* name;
  int bm_max;  // largest M the variant serves
  void (*launch)(LinearParams, const TuneBuffers&, cudaStream_t);
};

inline const std::vector<Variant>& variants() {
  static const std::vector<Variant> v = {
      {"m16_n64_k64_s4", 16, launch_split<16, 64, 64, 1, 4, 4>},
      {"m16_n64_k128_s3", 16, launch_split<16, 64, 128, 1, 4, 3>},
      {"m16_n64_k128_s4", 16, launch_split<16, 64, 128, 1, 4, 4>},
      {"m16_n128_k64_w8_s4", 16, launch_split<16, 128, 64, 1, 8, 4>},
      {"m64_n64_k64_s4", 64, launch_split<64, 64, 64, 2, 2, 4>},
      {"m64_n64_k128_s3", 64, launch_split<64, 64, 128, 2, 2, 3>},
      {"m64_n128_k64_w8_s4", 64, launch_split<64, 128, 64, 2, 4, 4>},
      {"m64_n128_k64_w8_s3", 64, launch_split<64, 128, 64, 2, 4, 3>},
  };
  return v;
}

// For each shape and M in {1, 16, 64}: every variant x kc, time (us) through `timer`, which
// takes a callable(int launch_index) and returns the median per-call time.
template <typename Timer, typename WeightsOf>
void run_tune(FILE* out, const char* shape, int64_t N, int64_t K, const void* x, void* y,
              WeightsOf&& weights_of, cudaStream_t stream, Timer&& timer) {
  static TuneBuffers bufs = [] {
    TuneBuffers b;
    LINEAR_CUDA_CHECK(cudaMalloc(&b.partial, size_t(64) << 20));
    LINEAR_CUDA_CHECK(cudaMalloc(&b.counters, size_t(1) << 20));
    LINEAR_CUDA_CHECK(cudaMemset(b.counters, 0, size_t(1) << 20));
    return b;
  }();
  for (int64_t M : {1, 16, 64}) {
    for (int kc : {128, 256, 512, 1024, 2048, 4096}) {
      if (kc > ((K + 63) / 64) * 64 && kc != 128) continue;
      LinearParams p{};
      p.x = static_cast<const __nv_bfloat16*>(x);
      p.y = static_cast<__nv_bfloat16*>(y);
      p.ldx = K;
      p.ldy = N;
      p.M = int(M);
      p.N = int(N);
      p.K = int(K);
      p.kc = kc;
      p.S = int((K + kc - 1) / kc);
      if (size_t(p.S) * M * N * 4 > (size_t(64) << 20)) continue;
      for (const Variant& v : variants()) {
        if (M > v.bm_max || (M <= 16 && v.bm_max == 64)) continue;
        double us = timer([&](int i) {
          LinearParams q = p;
          q.w = static_cast<const __nv_bfloat16*>(weights_of(i));
          v.launch(q, bufs, stream);
        });
        std::fprintf(out, "%s,%lld,%lld,%lld,%d,%d,%s,%.3f\n", shape, (long long)N,
                     (long long)K, (long long)M, kc, p.S, v.name, us);
      }
    }
  }
  std::fflush(out);
}

}  // namespace bitexact::ops::cuda::linear_tune
