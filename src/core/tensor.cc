// Tensor view helpers and the owning Buffer.
#include "core/tensor.h"

#include <cstdlib>
#include <sstream>

namespace bitexact {

Tensor Tensor::view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                    Device device) {
  BITEXACT_CHECK(shape.size() >= 1 && shape.size() <= kMaxDims, "tensor rank out of range");
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.ndim = int(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  int64_t st = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.stride[d] = st;
    st *= t.shape[d];
  }
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t st = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && stride[d] != st) return false;
    st *= shape[d];
  }
  return true;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  BITEXACT_CHECK(ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0], "bad row slice");
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(begin * stride[0]) * dtype_size(dtype);
  t.shape[0] = end - begin;
  return t;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> new_shape) const {
  BITEXACT_CHECK(is_contiguous(), "reshape of a non-contiguous tensor");
  Tensor t = view(data, dtype, new_shape, device);
  BITEXACT_CHECK(t.numel() == numel(), "reshape changes the element count");
  return t;
}

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

DeviceAllocator& cuda_allocator() {
  static DeviceAllocator a;
  return a;
}

Buffer::Buffer(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device == Device::kCpu) {
    data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  } else {
    if (!cuda_allocator().alloc) fail(ErrorKind::kUnsupported, "this build has no CUDA backend");
    data_ = cuda_allocator().alloc(bytes);
  }
  if (!data_) fail(ErrorKind::kOutOfResources, "out of memory allocating " + std::to_string(bytes) + " bytes");
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_), device_(o.device_) {
  o.data_ = nullptr;
  o.bytes_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Buffer::release() {
  if (!data_) return;
  if (device_ == Device::kCpu) std::free(data_);
  else if (cuda_allocator().free) cuda_allocator().free(data_);
  data_ = nullptr;
}

Tensor Buffer::as(DType dtype, std::initializer_list<int64_t> shape) const {
  Tensor t = Tensor::view(data_, dtype, shape, device_);
  BITEXACT_CHECK(t.nbytes() <= bytes_, "view larger than its buffer");
  return t;
}

}  // namespace bitexact
