// The CUDA backend's plumbing: device selection and the allocator hooks of core (init),
// synchronize, and copy between host and device or device and device with dtype conversion.
// Conversions round to nearest even on both sides, the rounding of core/dtype.h.
#include <cstring>
#include <vector>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"

namespace bitexact::ops::cuda {
namespace {

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later checks see their own
    return nullptr;
  }
  return p;
}

void device_free(void* p) { (void)cudaFree(p); }

// A tensor as a list of rows for copies: contiguous tensors are one row, rank-2 strided tensors
// are shape[0] rows of shape[1] elements.
struct CopyRows {
  int64_t rows = 1, cols = 0, stride = 0;
};

CopyRows copy_rows(const Tensor& t) {
  if (t.is_contiguous()) return {1, t.numel(), t.numel()};
  if (t.ndim != 2 || t.stride[1] != 1)
    unsupported("copy", "only contiguous or rank-2 row-strided tensors, got " + t.shape_str());
  return {t.shape[0], t.shape[1], t.stride[0]};
}

template <typename S, typename D>
__global__ void convert_kernel(const S* __restrict__ src, int64_t src_stride, D* __restrict__ dst,
                               int64_t dst_stride, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / cols, c = i % cols;
    dst[r * dst_stride + c] = from_f32<D>(to_f32(src[r * src_stride + c]));
  }
}

template <typename S>
void launch_convert_to(const Tensor& src, const CopyRows& s, Tensor& dst, const CopyRows& d,
                       cudaStream_t st) {
  const int64_t n = s.rows * s.cols;
  const unsigned grid = std::min<unsigned>(ceil_div(n, 256), 65535u * 8u);
  auto go = [&](auto* out) {
    convert_kernel<<<grid, 256, 0, st>>>(src.ptr<S>(), s.stride, out, d.stride, s.rows, s.cols);
  };
  switch (dst.dtype) {
    case DType::kF32:
      go(dst.ptr<float>());
      break;
    case DType::kBF16:
      go(dst.ptr<__nv_bfloat16>());
      break;
    case DType::kF16:
      go(dst.ptr<__half>());
      break;
    default:
      unsupported("copy", "conversion to I32");
  }
  BITEXACT_CUDA_CHECK_LAUNCH();
}

// Device to device, both possibly rank-2 strided, converting dtype on the way.
void copy_device(const Tensor& src, Tensor& dst, cudaStream_t st) {
  CopyRows s = copy_rows(src), d = copy_rows(dst);
  // A contiguous side takes the row shape of a strided other side (equal element counts).
  if (s.rows == 1 && d.rows > 1) s = {d.rows, d.cols, d.cols};
  if (d.rows == 1 && s.rows > 1) d = {s.rows, s.cols, s.cols};
  if (s.rows != d.rows || s.cols != d.cols)
    unsupported("copy", "strided tensors of different shapes " + src.shape_str() + " and " +
                            dst.shape_str());
  if (src.dtype == dst.dtype) {
    const size_t es = dtype_size(src.dtype);
    BITEXACT_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, size_t(d.stride) * es, src.data,
                                          size_t(s.stride) * es, size_t(s.cols) * es,
                                          size_t(s.rows), cudaMemcpyDeviceToDevice, st));
    return;
  }
  switch (src.dtype) {
    case DType::kF32:
      launch_convert_to<float>(src, s, dst, d, st);
      break;
    case DType::kBF16:
      launch_convert_to<__nv_bfloat16>(src, s, dst, d, st);
      break;
    case DType::kF16:
      launch_convert_to<__half>(src, s, dst, d, st);
      break;
    default:
      unsupported("copy", "conversion from I32");
  }
}

// Host rows -> host contiguous buffer in dst dtype (host-side conversion, core/dtype.h rounding).
void host_pack(const Tensor& src, DType dt, std::vector<char>& out) {
  CopyRows s = copy_rows(src);
  const int64_t n = s.rows * s.cols;
  out.resize(size_t(n) * dtype_size(dt));
  for (int64_t r = 0; r < s.rows; ++r) {
    const char* row =
        static_cast<const char*>(src.data) + size_t(r * s.stride) * dtype_size(src.dtype);
    char* o = out.data() + size_t(r * s.cols) * dtype_size(dt);
    if (src.dtype == dt) {
      std::memcpy(o, row, size_t(s.cols) * dtype_size(dt));
      continue;
    }
    for (int64_t c = 0; c < s.cols; ++c) {
      float v;
      switch (src.dtype) {
        case DType::kF32:
          std::memcpy(&v, row + 4 * c, 4);
          break;
        case DType::kBF16: {
          uint16_t h;
          std::memcpy(&h, row + 2 * c, 2);
          v = bf16_to_f32(h);
          break;
        }
        case DType::kF16: {
          uint16_t h;
          std::memcpy(&h, row + 2 * c, 2);
          v = f16_to_f32(h);
          break;
        }
        default:
          unsupported("copy", "conversion from I32");
      }
      switch (dt) {
        case DType::kF32:
          std::memcpy(o + 4 * c, &v, 4);
          break;
        case DType::kBF16: {
          uint16_t h = f32_to_bf16(v);
          std::memcpy(o + 2 * c, &h, 2);
          break;
        }
        case DType::kF16: {
          uint16_t h = f32_to_f16(v);
          std::memcpy(o + 2 * c, &h, 2);
          break;
        }
        default:
          unsupported("copy", "conversion to I32");
      }
    }
  }
}

}  // namespace

void init_cuda_backend(int device_index) {
  int count = 0;
  BITEXACT_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device_index < 0 || device_index >= count)
    fail(ErrorKind::kInvalidArgument, "cuda device " + std::to_string(device_index) +
                                          " does not exist (" + std::to_string(count) + " found)");
  BITEXACT_CUDA_CHECK(cudaSetDevice(device_index));
  cuda_allocator().alloc = &device_alloc;
  cuda_allocator().free = &device_free;
}

void synchronize(const ExecContext& ctx) {
  BITEXACT_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
}

// Host->device converts on the host first (then one cudaMemcpyAsync, which returns once pageable
// memory is staged); device->host copies then converts after a stream sync. Only device->device
// copies are graph-capturable.
void copy(const ExecContext& ctx, const Tensor& src, Tensor& dst) {
  cudaStream_t st = stream_of(ctx);
  if (src.device == Device::kCuda && dst.device == Device::kCuda) return copy_device(src, dst, st);
  if (src.device == Device::kCpu && dst.device == Device::kCuda) {
    std::vector<char> staged;
    host_pack(src, dst.dtype, staged);
    CopyRows d = copy_rows(dst);
    const size_t es = dtype_size(dst.dtype);
    BITEXACT_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, size_t(d.stride) * es, staged.data(),
                                          size_t(d.cols) * es, size_t(d.cols) * es, size_t(d.rows),
                                          cudaMemcpyHostToDevice, st));
    BITEXACT_CUDA_CHECK(cudaStreamSynchronize(st));  // `staged` dies at return
    return;
  }
  if (src.device == Device::kCuda && dst.device == Device::kCpu) {
    CopyRows s = copy_rows(src);
    const size_t es = dtype_size(src.dtype);
    std::vector<char> raw(size_t(s.rows * s.cols) * es);
    BITEXACT_CUDA_CHECK(cudaMemcpy2DAsync(raw.data(), size_t(s.cols) * es, src.data,
                                          size_t(s.stride) * es, size_t(s.cols) * es,
                                          size_t(s.rows), cudaMemcpyDeviceToHost, st));
    BITEXACT_CUDA_CHECK(cudaStreamSynchronize(st));
    Tensor packed = Tensor::view(raw.data(), src.dtype, {s.rows * s.cols});
    std::vector<char> conv;
    host_pack(packed, dst.dtype, conv);
    CopyRows d = copy_rows(dst);
    const size_t ed = dtype_size(dst.dtype);
    for (int64_t r = 0; r < d.rows; ++r)
      std::memcpy(static_cast<char*>(dst.data) + size_t(r * d.stride) * ed,
                  conv.data() + size_t(r * d.cols) * ed, size_t(d.cols) * ed);
    return;
  }
  unsupported("copy", "host to host copies go to the cpu backend");
}

}  // namespace bitexact::ops::cuda
