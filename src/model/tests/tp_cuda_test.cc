// Tensor parallelism on real GPUs over NCCL (run on a multi-GPU machine; skips with fewer than
// two GPUs): TP = 1 with the fixed 8-part split, then every degree the host has (2, 4, 8), give
// the same logits bit for bit on the bf16 dense fixture; the TP-dependent fold must differ.
// Passed on 2 H200 GPUs (nvidia-h200-x2, 2026-11-24; docs/notes/tensor_parallel.md).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>

#include "model/tests/sequence_runner.h"
#include "ops/cuda/cuda_ops.h"

using namespace bitexact;
using namespace bitexact::model;

namespace {

const std::string kFixture = std::string(BITEXACT_SOURCE_DIR) + "/fixtures/qwen3-tiny-bf16";

int gpus() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::vector<float> run(int tp, bool invariant) {
  ModelOptions o;
  o.device = Device::kCuda;
  o.tensor_parallel_size = tp;
  o.tp_invariant = invariant;
  o.max_positions = 4096;
  test_support::SequenceRunner r(kFixture, o);
  std::vector<float> all = r.step({5, 17, 300, 2999, 42, 7, 1000, 12, 99, 3, 2047}, 0);
  int pos = 11;
  for (int32_t t : {11, 400, 2500, 8}) {
    std::vector<float> l = r.step({t}, pos++);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace

TEST(CudaTensorParallel, DegreesGiveEqualBits) {
  const int n = gpus();
  if (n < 2) GTEST_SKIP() << "needs at least 2 GPUs, found " << n;
  ops::cuda::init_cuda_backend(0);
  const std::vector<float> base = run(1, true);
  for (int tp : {2, 4, 8}) {
    if (tp > n) continue;
    EXPECT_TRUE(same(base, run(tp, true))) << "tp=" << tp;
  }
}

TEST(CudaTensorParallel, TpDependentFoldIsDetected) {
  const int n = gpus();
  if (n < 2) GTEST_SKIP() << "needs at least 2 GPUs, found " << n;
  ops::cuda::init_cuda_backend(0);
  EXPECT_FALSE(same(run(1, false), run(2, false)));
}
