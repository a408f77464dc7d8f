// Tensor views (pointer, dtype, device, shape, strides) and an owning buffer. Views never own
// memory; kernels receive them, or the raw pointers and strides inside them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace bitexact {

enum class Device : uint8_t { kCpu, kCuda };

constexpr int kMaxDims = 4;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> stride{};  // in elements

  static Tensor view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device = Device::kCpu);

  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  bool is_contiguous() const;
  // Rows [begin, end) of the first dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // The same memory seen with another contiguous shape (numel must match).
  Tensor reshape(std::initializer_list<int64_t> new_shape) const;

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
  std::string shape_str() const;
};

// Host or device memory that a Tensor can view. Host memory is 64-byte aligned for AVX loads.
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes, Device device);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  Device device() const { return device_; }
  Tensor as(DType dtype, std::initializer_list<int64_t> shape) const;

 private:
  void release();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::kCpu;
};

// Set by the CUDA backend when it is linked, so that core does not depend on CUDA.
struct DeviceAllocator {
  void* (*alloc)(size_t bytes) = nullptr;
  void (*free)(void* ptr) = nullptr;
};
DeviceAllocator& cuda_allocator();

}  // namespace bitexact
