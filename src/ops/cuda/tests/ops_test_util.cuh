// Helpers for the CUDA op tests: device buffers filled from host floats (rounded to bf16 with
// core's rounding), poisoned outputs, downloads, a seeded RNG that prints its seed, and a
// per-element tolerance check that reports the worst element.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"

namespace bitexact::ops::cuda::test {

// A fresh seed per run, printed so that a failure can be replayed (BITEXACT_SEED=... to force).
inline uint64_t test_seed(const char* what) {
  uint64_t seed;
  if (const char* env = std::getenv("BITEXACT_SEED"))
    seed = std::strtoull(env, nullptr, 10);
  else
    seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  std::printf("[seed] %s: %llu\n", what, (unsigned long long)seed);
  return seed;
}

inline std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float lo = -1.f,
                                        float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Rounds every value to bf16 (so CPU reference and GPU see the same inputs).
inline void round_bf16(std::vector<float>& v) {
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

struct DeviceTensor {
  Buffer buf;
  Tensor t;
};

inline ExecContext cpu_ctx() { return ExecContext{}; }
inline ExecContext gpu_ctx(cudaStream_t s = nullptr, bool invariant = true) {
  ExecContext c;
  c.device = Device::kCuda;
  c.stream = s;
  c.batch_invariant = invariant;
  return c;
}

inline DeviceTensor device_empty(DType dt, std::initializer_list<int64_t> shape) {
  DeviceTensor d;
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  d.buf = Buffer(size_t(std::max<int64_t>(n, 1)) * dtype_size(dt), Device::kCuda);
  d.t = d.buf.as(dt, shape);
  return d;
}

// Fills with 0xff bytes: NaN in bf16 / f32, -1 in I32; an unwritten element cannot pass a check.
inline void poison(const Tensor& t) { BITEXACT_CUDA_CHECK(cudaMemset(t.data, 0xff, t.nbytes())); }

inline DeviceTensor upload(const std::vector<float>& host, DType dt,
                           std::initializer_list<int64_t> shape) {
  DeviceTensor d = device_empty(dt, shape);
  Tensor src = Tensor::view(const_cast<float*>(host.data()), DType::kF32, {int64_t(host.size())});
  Tensor dst = d.t.reshape({d.t.numel()});
  ops::cuda::copy(gpu_ctx(), src, dst);
  return d;
}

inline DeviceTensor upload_i32(const std::vector<int32_t>& host,
                               std::initializer_list<int64_t> shape) {
  DeviceTensor d = device_empty(DType::kI32, shape);
  BITEXACT_CUDA_CHECK(cudaMemcpy(d.t.data, host.data(), host.size() * 4, cudaMemcpyHostToDevice));
  return d;
}

// Any device tensor (contiguous) -> host floats.
inline std::vector<float> download(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  Tensor dst = Tensor::view(out.data(), DType::kF32, {t.numel()});
  Tensor src = t.reshape({t.numel()});
  ops::cuda::copy(gpu_ctx(), src, dst);
  return out;
}

// Raw bytes of a device tensor, for bitwise comparisons.
inline std::vector<uint8_t> download_bytes(const Tensor& t) {
  std::vector<uint8_t> out(t.nbytes());
  BITEXACT_CUDA_CHECK(cudaDeviceSynchronize());
  BITEXACT_CUDA_CHECK(cudaMemcpy(out.data(), t.data, out.size(), cudaMemcpyDeviceToHost));
  return out;
}

// Bitwise equality that reports the first differing byte instead of printing whole buffers.
inline ::testing::AssertionResult same_bytes(const std::vector<uint8_t>& a,
                                             const std::vector<uint8_t>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) {
      size_t n = 0;
      for (size_t j = i; j < a.size(); ++j) n += a[j] != b[j];
      return ::testing::AssertionFailure() << "first difference at byte " << i << " of " << a.size()
                                           << " (" << n << " bytes differ)";
    }
  return ::testing::AssertionSuccess();
}

// |got - want| <= atol + rtol * |want| for every element; NaN never passes.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol,
                         float rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_err = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double lim = atol + rtol * std::fabs(double(want[i]));
    if (!(err <= lim)) ++bad;
    if (!(err <= worst_err) || std::isnan(err)) {
      if (std::isnan(err) || err > worst_err) {
        worst_err = std::isnan(err) ? INFINITY : err;
        worst = i;
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements out of tolerance; worst at " << worst << ": got " << got[worst]
                     << " want " << want[worst];
}

}  // namespace bitexact::ops::cuda::test
