// Helpers shared by the linear (GEMM) CUDA tests: device buffers, random bf16 data from a
// printed time seed, poisoning, bitwise comparison on the device, and the Qwen3 shape list.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_cuda.cuh"

namespace bitexact::ops::cuda::linear_test {

using linear_detail::LinearPath;

#define LT_CHECK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

struct Shape {
  const char* name;
  int64_t N, K;
};

// Every weight shape the engine runs (Qwen3 0.6B/1.7B/8B, 30B-A3B attention, lm_heads) plus tiny
// test-model shapes that hit the generic edges (N not a multiple of 64, K of one tile).
inline const std::vector<Shape>& all_shapes() {
  static const std::vector<Shape> shapes = {
      {"0.6B qkv", 4096, 1024},  {"0.6B o", 1024, 2048},    {"0.6B gate_up", 6144, 1024},
      {"0.6B down", 1024, 3072}, {"1.7B qkv", 4096, 2048},  {"1.7B o", 2048, 2048},
      {"1.7B gate_up", 12288, 2048}, {"1.7B down", 2048, 6144}, {"8B qkv", 6144, 4096},
      {"8B o", 4096, 4096},      {"8B gate_up", 24576, 4096}, {"8B down", 4096, 12288},
      {"30B-A3B qkv", 5120, 2048}, {"30B-A3B o", 2048, 4096}, {"0.6B lm_head", 151936, 1024},
      {"8B lm_head", 151936, 4096}, {"tiny 2000x64", 2000, 64}, {"tiny 192x64", 192, 64},
      {"odd 264x1032", 264, 1032}};
  return shapes;
}

// Seeded by the clock so every run draws fresh inputs; printed so a failure can be replayed
// (BITEXACT_TEST_SEED overrides).
inline uint64_t test_seed() {
  static uint64_t seed = [] {
    const char* env = std::getenv("BITEXACT_TEST_SEED");
    uint64_t s = env ? std::strtoull(env, nullptr, 10)
                     : uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    std::printf("linear test seed: %llu (set BITEXACT_TEST_SEED to replay)\n",
                (unsigned long long)s);
    return s;
  }();
  return seed;
}

// Owning device allocation.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    if (cudaMalloc(&ptr, n) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  uint16_t* u16() const { return static_cast<uint16_t*>(ptr); }
};

// A bf16 [rows, cols] view with row stride ld on the device.
inline Tensor dev_matrix(void* p, int64_t rows, int64_t cols, int64_t ld) {
  Tensor t;
  t.data = p;
  t.dtype = DType::kBF16;
  t.device = Device::kCuda;
  t.ndim = 2;
  t.shape = {rows, cols, 0, 0};
  t.stride = {ld, 1, 0, 0};
  return t;
}

// Random bf16 values in [-1, 1] with full mantissas (never zeros: they hide unwritten outputs).
inline std::vector<uint16_t> random_bf16(size_t n, uint64_t salt) {
  std::mt19937_64 rng(test_seed() * 0x9E3779B97F4A7C15ull + salt);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& e : v) e = f32_to_bf16(dist(rng));
  return v;
}

__global__ void linear_test_fill_kernel(uint16_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float f = float(int32_t(z >> 40) - (1 << 23)) / float(1 << 23);  // [-1, 1)
    p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
}

// Fills a large device buffer with random bf16 (device-side, for the big weight matrices).
inline void fill_random_device(uint16_t* p, size_t n, uint64_t salt) {
  linear_test_fill_kernel<<<1024, 256>>>(p, n, test_seed() ^ (salt * 0xD1B54A32D192ED03ull));
}

__global__ void linear_test_count_diff(const uint16_t* a, int64_t lda, const uint16_t* b,
                                       int64_t ldb, int64_t rows, int64_t cols,
                                       unsigned long long* out) {
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * cols;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / cols, c = i % cols;
    local += a[r * lda + c] != b[r * ldb + c];
  }
  if (local) atomicAdd(out, local);  // integer count, test only
}

// Enqueues a count of differing bf16 bit patterns between a[:rows] and b[:rows] into *out.
inline void count_diff_async(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                             int64_t rows, int64_t cols, unsigned long long* out,
                             cudaStream_t stream = nullptr) {
  linear_test_count_diff<<<512, 256, 0, stream>>>(a, lda, b, ldb, rows, cols, out);
}

// The number of differing bf16 bit patterns between two [rows, cols] matrices (synchronous).
inline unsigned long long count_diffs(const uint16_t* a, int64_t lda, const uint16_t* b,
                                      int64_t ldb, int64_t rows, int64_t cols) {
  DeviceBuffer d(8);
  if (cudaMemset(d.ptr, 0, 8) != cudaSuccess) throw std::runtime_error("cudaMemset failed");
  count_diff_async(a, lda, b, ldb, rows, cols, static_cast<unsigned long long*>(d.ptr));
  unsigned long long n = 0;
  if (cudaMemcpy(&n, d.ptr, 8, cudaMemcpyDeviceToHost) != cudaSuccess)
    throw std::runtime_error("cudaMemcpy failed");
  return n;
}

}  // namespace bitexact::ops::cuda::linear_test
