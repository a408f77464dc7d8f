// CUDA qk_norm_rope_kv_write: a layer's attention preamble (q/k RMSNorm, rotary embedding, paged
// KV cache write) in one kernel instead of five. Each warp owns one (token, head) item: a q head,
// a k head (normed, rotated, written back and into the k cache) or a v head (copied to the v
// cache). The arithmetic of every element is that of rms_norm_kernel (norm.cu) for its 32-thread
// shape, then rope_kernel and kv_write_kernel (elementwise.cu), so the bits equal the five ops'.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/pdl.cuh"

namespace bitexact::ops::cuda {
namespace {

constexpr int kWarps = 4;  // items per CTA
// rms_norm runs rows of D <= 256 with 32 threads, thread t summing the 8-element group t; with
// one group per lane a warp reproduces that tree exactly. Longer heads take the five kernels.
constexpr int kMaxHeadDim = 256;

struct PrepArgs {
  void* q;  // [M, Hq, Dh] at strides (qs0, qs1, 1), in place
  int64_t qs0, qs1;
  void* k;  // [M, Hkv, Dh] at strides (ks0, ks1, 1), in place
  int64_t ks0, ks1;
  const void* v;  // [M, Hkv, Dh] at strides (vs0, vs1, 1)
  int64_t vs0, vs1;
  const void* q_norm;  // [Dh] or nullptr (no norm)
  const void* k_norm;  // [Dh] or nullptr
  DType q_norm_t, k_norm_t;
  float eps;
  const int32_t* pos;  // [M]
  const void* cs;      // [P, Dh]: cos of the Dh/2 frequencies, then sin
  DType cs_t;
  int64_t cs_stride;
  bool interleaved;
  const int32_t* slots;  // [M]; < 0: padding, nothing written to the caches
  void* kc;              // [blocks, block_size, Hkv, Dh] at strides (c0, c1, c2, 1)
  void* vc;              // same layout as kc
  DType cache_t;
  int64_t block_size, c0, c1, c2;
  int64_t hq, hkv, dh;
};

// Elements [i0, i0 + 8) of a row of n as f32 (0 past n): one 16-byte load for a whole aligned
// group of 2-byte elements, else element by element. The values are the same either way.
template <typename T>
__device__ __forceinline__ void load_group(const T* row, int64_t i0, int64_t n, float (&v)[8]) {
  if constexpr (sizeof(T) == 2) {
    if (i0 + 8 <= n && (reinterpret_cast<uintptr_t>(row + i0) & 15) == 0) {
      const uint4 u = *reinterpret_cast<const uint4*>(row + i0);
      T e[8];
      memcpy(e, &u, sizeof(u));
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = to_f32(e[j]);
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = i0 + j < n ? to_f32(row[i0 + j]) : 0.0f;
}

template <typename T>
__global__ void __launch_bounds__(kWarps * 32) qk_norm_rope_kv_kernel(PrepArgs a) {
  __shared__ float heads[kWarps][kMaxHeadDim];  // one head per warp, between norm and rope
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t m = blockIdx.x, item = int64_t(blockIdx.y) * kWarps + warp;
  const int64_t dh = a.dh;
  if (item >= a.hq + 2 * a.hkv) return;
  // Before pdl_wait (pdl.cuh): the step's metadata (slots, positions: uploaded before the step's
  // first kernel, the op's precondition) and weights (norm weights, the rope table), so that after
  // the wait only the head itself is a load on the critical path.
  const int64_t slot = a.slots[m];
  const bool is_k = item >= a.hq && item < a.hq + a.hkv, is_v = item >= a.hq + a.hkv;
  const int64_t h = is_v ? item - a.hq - a.hkv : is_k ? item - a.hq : item;
  // kv_write_kernel's destination of (slot, h), element 0.
  const int64_t dst = (slot / a.block_size) * a.c0 + (slot % a.block_size) * a.c1 + h * a.c2;
  const void* w = is_k ? a.k_norm : a.q_norm;
  const DType wt = is_k ? a.k_norm_t : a.q_norm_t;
  const int64_t i0 = int64_t(lane) * 8;  // this lane's group, as rms_norm's thread `lane`
  float wv[8];                           // the norm weights of the group
  constexpr int kPairs = kMaxHeadDim / 64;  // rotated pairs per lane (i = lane + 32 j)
  float cv[kPairs], sv[kPairs];
  const int64_t half = dh / 2;
  if (!is_v) {
#pragma unroll
    for (int j = 0; j < 8; ++j) wv[j] = w != nullptr && i0 + j < dh ? load_any(w, wt, i0 + j) : 0.0f;
    const int64_t crow = int64_t(a.pos[m]) * a.cs_stride;
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int64_t i = lane + 32 * j;
      cv[j] = i < half ? load_any(a.cs, a.cs_t, crow + i) : 0.0f;
      sv[j] = i < half ? load_any(a.cs, a.cs_t, crow + half + i) : 0.0f;
    }
  }
  pdl_wait();
  pdl_launch_dependents();

  if (is_v) {
    if (slot < 0) return;
    const T* src = static_cast<const T*>(a.v) + m * a.vs0 + h * a.vs1;
    for (int64_t e = lane; e < dh; e += 32) store_any(a.vc, a.cache_t, dst + e, to_f32(src[e]));
    return;
  }

  T* x = is_k ? static_cast<T*>(a.k) + m * a.ks0 + h * a.ks1
              : static_cast<T*>(a.q) + m * a.qs0 + h * a.qs1;
  float v[8];
  load_group(x, i0, dh, v);
  if (w != nullptr) {
    // sum_squares + block_sum<32> of norm.cu: fmaf over the group in ascending order from 0,
    // then xor-shuffles 16..1.
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (i0 + j < dh) acc = fmaf(v[j], v[j], acc);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    const float inv = 1.0f / sqrtf(acc / float(dh) + a.eps);
    // rms_norm stores w * (x * inv) rounded to T and rope reads that back: round here too.
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (i0 + j < dh) v[j] = to_f32(from_f32<T>(wv[j] * (v[j] * inv)));
  }
  float* row = heads[warp];
#pragma unroll
  for (int j = 0; j < 8; ++j)
    if (i0 + j < dh) row[i0 + j] = v[j];
  __syncwarp();

  // rope_kernel's rotation of pair i. Its products are spelled out: ptxas compiles rope_kernel's
  // `x1 * c - x2 * s` and `x2 * c + x1 * s` to fma(x1, c, -(x2 * s)) and fma(x1, s, x2 * c)
  // (checked in its SASS, sm_90a), and the intrinsics keep this kernel from contracting the
  // other way. attention_prep_cuda_test compares the bits with the five kernels.
  const bool to_cache = is_k && slot >= 0;
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
    const int64_t i = lane + 32 * j;
    if (i >= half) break;
    const float c = cv[j], s = sv[j];
    const int64_t ia = a.interleaved ? 2 * i : i, ib = a.interleaved ? 2 * i + 1 : i + half;
    const float x1 = row[ia], x2 = row[ib];
    const T o1 = from_f32<T>(__fmaf_rn(x1, c, -__fmul_rn(x2, s)));
    const T o2 = from_f32<T>(__fmaf_rn(x1, s, __fmul_rn(x2, c)));
    x[ia] = o1;
    x[ib] = o2;
    if (to_cache) {  // kv_write_kernel: the stored k element, converted to the cache dtype
      store_any(a.kc, a.cache_t, dst + ia, to_f32(o1));
      store_any(a.kc, a.cache_t, dst + ib, to_f32(o2));
    }
  }
}

void check_float(const Tensor& t, const char* what) {
  if (t.dtype == DType::kI32) unsupported("qk_norm_rope_kv_write", std::string(what) + " is I32");
}

}  // namespace

void qk_norm_rope_kv_write(const ExecContext& ctx, Tensor& q, Tensor& k, const Tensor& v,
                           const Tensor* q_norm, const Tensor* k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                           const Tensor& slots, Tensor& k_cache, Tensor& v_cache) {
  const char* op = "qk_norm_rope_kv_write";
  if (q.dtype != DType::kBF16 && q.dtype != DType::kF32)
    unsupported(op, "activations must be BF16 or F32");
  check_float(cos_sin, "cos_sin");
  check_float(k_cache, "k_cache");
  if (q_norm) check_float(*q_norm, "q_norm");
  if (k_norm) check_float(*k_norm, "k_norm");
  if (k_cache.dtype != v_cache.dtype) unsupported(op, "k and v caches must share a dtype");
  for (int i = 0; i < 4; ++i)
    if (k_cache.stride[i] != v_cache.stride[i]) unsupported(op, "cache layouts differ");
  const int64_t M = q.dim(0), hq = q.dim(1), hkv = k.dim(1), dh = q.dim(2);
  if (M == 0) return;
  if (dh > kMaxHeadDim) {  // no served model has such heads; the five ops give the same bits
    if (q_norm) cuda::rms_norm(ctx, q, *q_norm, eps, q);
    if (k_norm) cuda::rms_norm(ctx, k, *k_norm, eps, k);
    cuda::rope(ctx, q, positions, cos_sin, interleaved);
    cuda::rope(ctx, k, positions, cos_sin, interleaved);
    cuda::kv_cache_write(ctx, k, v, slots, k_cache, v_cache);
    return;
  }
  PrepArgs a;
  a.q = q.data, a.qs0 = q.stride[0], a.qs1 = q.stride[1];
  a.k = k.data, a.ks0 = k.stride[0], a.ks1 = k.stride[1];
  a.v = v.data, a.vs0 = v.stride[0], a.vs1 = v.stride[1];
  a.q_norm = q_norm ? q_norm->data : nullptr, a.q_norm_t = q_norm ? q_norm->dtype : DType::kF32;
  a.k_norm = k_norm ? k_norm->data : nullptr, a.k_norm_t = k_norm ? k_norm->dtype : DType::kF32;
  a.eps = eps;
  a.pos = positions.ptr<int32_t>();
  a.cs = cos_sin.data, a.cs_t = cos_sin.dtype, a.cs_stride = cos_sin.stride[0];
  a.interleaved = interleaved;
  a.slots = slots.ptr<int32_t>();
  a.kc = k_cache.data, a.vc = v_cache.data, a.cache_t = k_cache.dtype;
  a.block_size = k_cache.dim(1);
  a.c0 = k_cache.stride[0], a.c1 = k_cache.stride[1], a.c2 = k_cache.stride[2];
  a.hq = hq, a.hkv = hkv, a.dh = dh;
  // One CTA row per token, kWarps items per CTA: the grid follows M, the arithmetic of an item
  // does not.
  const dim3 grid(unsigned(M), ceil_div(hq + 2 * hkv, kWarps));
  if (q.dtype == DType::kBF16)
    BITEXACT_CUDA_CHECK(launch_pdl(qk_norm_rope_kv_kernel<__nv_bfloat16>, grid, dim3(kWarps * 32),
                                   0, stream_of(ctx), a));
  else
    BITEXACT_CUDA_CHECK(
        launch_pdl(qk_norm_rope_kv_kernel<float>, grid, dim3(kWarps * 32), 0, stream_of(ctx), a));
}

}  // namespace bitexact::ops::cuda
