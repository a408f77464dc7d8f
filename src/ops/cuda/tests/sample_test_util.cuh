// Helpers of the CUDA sample_tokens tests (sample_tokens_cuda_test, sample_filter_cuda_test): the
// CPU op's and the CUDA op's draws for a batch of rows (outputs poisoned first), and CUDA
// log_softmax on the host.
#pragma once

#include <algorithm>
#include <vector>

#include "ops/cuda/tests/ops_test_util.cuh"

namespace bitexact::ops::cuda::test {

struct Drawn {
  std::vector<int32_t> ids;
  std::vector<float> lps;
};

// The CPU op's draws (max_top_k: the op's speed knob; every value gives the same draws).
inline Drawn cpu_draw(std::vector<float>& x, int64_t rows, int64_t v, std::vector<SampleRow>& prm,
                      int max_top_k = kMaxSampleTopK) {
  Drawn d{std::vector<int32_t>(size_t(rows), -5), std::vector<float>(size_t(rows), NAN)};
  Tensor hx = Tensor::view(x.data(), DType::kF32, {rows, v});
  Tensor p = Tensor::view(prm.data(), DType::kI32, {rows, kSampleRowWords});
  Tensor ids = Tensor::view(d.ids.data(), DType::kI32, {rows});
  Tensor lps = Tensor::view(d.lps.data(), DType::kF32, {rows});
  ops::sample_tokens(cpu_ctx(), hx, p, ids, lps, max_top_k);
  return d;
}

// max_top_k < 0: the largest top_k <= kMaxSampleTopK of the rows (as the model passes it).
inline Drawn gpu_draw(const Tensor& x, const std::vector<SampleRow>& prm, int max_top_k = -1) {
  const int64_t rows = x.dim(0);
  if (max_top_k < 0) {
    max_top_k = 0;
    for (const SampleRow& r : prm)
      if (r.top_k <= kMaxSampleTopK) max_top_k = std::max(max_top_k, r.top_k);
  }
  auto p = device_empty(DType::kI32, {rows, kSampleRowWords});
  BITEXACT_CUDA_CHECK(cudaMemcpy(p.t.data, prm.data(), prm.size() * sizeof(SampleRow), cudaMemcpyHostToDevice));
  auto ids = device_empty(DType::kI32, {rows}), lps = device_empty(DType::kF32, {rows});
  poison(ids.t);
  poison(lps.t);
  ops::sample_tokens(gpu_ctx(), x, p.t, ids.t, lps.t, max_top_k);
  Drawn d{std::vector<int32_t>(size_t(rows)), std::vector<float>(size_t(rows))};
  BITEXACT_CUDA_CHECK(cudaMemcpy(d.ids.data(), ids.t.data, ids.t.nbytes(), cudaMemcpyDeviceToHost));
  BITEXACT_CUDA_CHECK(cudaMemcpy(d.lps.data(), lps.t.data, lps.t.nbytes(), cudaMemcpyDeviceToHost));
  return d;
}

// CUDA log_softmax of x, on the host.
inline std::vector<float> gpu_log_softmax(const Tensor& x) {
  auto out = device_empty(DType::kF32, {x.dim(0), x.dim(1)});
  ops::cuda::log_softmax(gpu_ctx(), x, out.t);
  std::vector<float> h(size_t(x.numel()));
  BITEXACT_CUDA_CHECK(cudaMemcpy(h.data(), out.t.data, out.t.nbytes(), cudaMemcpyDeviceToHost));
  return h;
}

}  // namespace bitexact::ops::cuda::test
