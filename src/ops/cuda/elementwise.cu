// CUDA element-wise and data-movement ops: rotary embedding, SiLU-and-multiply, embedding lookup,
// row gather and paged KV cache writes. None of them reduces anything: each output element is a
// function of its own inputs, so batching cannot change a bit. Math in f32, stores round to
// nearest even.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/pdl.cuh"
#include "ops/cuda/swiglu.cuh"

namespace bitexact::ops::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return std::max(1u, std::min<unsigned>(ceil_div(n, kThreads), 1u << 20));
}

// Every kernel here is launched through launch_pdl: the loop waits for the previous kernel
// first (pdl.cuh).
#define BITEXACT_GRID_LOOP(i, n)                                            \
  pdl_wait();                                                               \
  pdl_launch_dependents();                                                  \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// x[M,H,Dh] in place; one thread per rotated pair (m, h, i < Dh/2).
__global__ void rope_kernel(void* x, DType xt, int64_t s0, int64_t s1, int64_t heads, int64_t dh,
                            const int32_t* __restrict__ pos, const void* cs, DType cst,
                            int64_t cs_stride, bool interleaved, int64_t n) {
  const int64_t half = dh / 2;
  BITEXACT_GRID_LOOP(t, n) {
    const int64_t i = t % half, r = t / half, h = r % heads, m = r / heads;
    const int64_t row = m * s0 + h * s1;
    const int64_t crow = int64_t(pos[m]) * cs_stride;
    const float c = load_any(cs, cst, crow + i), s = load_any(cs, cst, crow + half + i);
    const int64_t a = row + (interleaved ? 2 * i : i),
                  b = row + (interleaved ? 2 * i + 1 : i + half);
    const float x1 = load_any(x, xt, a), x2 = load_any(x, xt, b);
    // The contraction ptxas chose for `x1 * c - x2 * s` and `x2 * c + x1 * s`, written out so
    // the fused attention preamble (attention_prep.cu) can use the very same operations.
    store_any(x, xt, a, __fmaf_rn(x1, c, -__fmul_rn(x2, s)));
    store_any(x, xt, b, __fmaf_rn(x1, s, __fmul_rn(x2, c)));
  }
}

// out[M,F] = silu(gate_up[:, :F]) * gate_up[:, F:]
__global__ void silu_mul_kernel(const void* gu, DType gt, int64_t gs, void* out, DType ot,
                                int64_t os, int64_t f, int64_t n) {
  BITEXACT_GRID_LOOP(t, n) {
    const int64_t m = t / f, i = t % f;
    const float g = load_any(gu, gt, m * gs + i), u = load_any(gu, gt, m * gs + f + i);
    store_any(out, ot, m * os + i, swiglu(g, u));
  }
}

// out[r, :] = src[idx[r], :] converted; an index outside [0, src_rows) gives a NaN row instead of
// reading out of bounds (the ids are device data, so they cannot be checked on the host cheaply).
__global__ void gather_kernel(const void* src, DType st, int64_t ss, int64_t src_rows,
                              const int32_t* __restrict__ idx, void* out, DType ot, int64_t os,
                              int64_t d, int64_t n) {
  BITEXACT_GRID_LOOP(t, n) {
    const int64_t r = t / d, c = t % d;
    const int64_t s = idx[r];
    const float v =
        (s >= 0 && s < src_rows) ? load_any(src, st, s * ss + c) : __int_as_float(0x7fc00000);
    store_any(out, ot, r * os + c, v);
  }
}

// Writes k and v rows of token m, head h to slot[m] of the paged caches; slot < 0 is padding.
__global__ void kv_write_kernel(const void* k, const void* v, DType kt, int64_t ks0, int64_t ks1,
                                int64_t vs0, int64_t vs1, const int32_t* __restrict__ slots,
                                void* kc, void* vc, DType ct, int64_t block_size, int64_t cs0,
                                int64_t cs1, int64_t cs2, int64_t hkv, int64_t dh, int64_t n) {
  BITEXACT_GRID_LOOP(t, n) {
    const int64_t e = t % dh, r = t / dh, h = r % hkv, m = r / hkv;
    const int64_t slot = slots[m];
    if (slot < 0) continue;
    const int64_t dst = (slot / block_size) * cs0 + (slot % block_size) * cs1 + h * cs2 + e;
    store_any(kc, ct, dst, load_any(k, kt, m * ks0 + h * ks1 + e));
    store_any(vc, ct, dst, load_any(v, kt, m * vs0 + h * vs1 + e));
  }
}

void check_float(const char* op, const Tensor& t) {
  if (t.dtype == DType::kI32) unsupported(op, "tensor of dtype I32");
}

}  // namespace

void rope(const ExecContext& ctx, Tensor& x, const Tensor& positions, const Tensor& cos_sin,
          bool interleaved) {
  check_float("rope", x);
  check_float("rope", cos_sin);
  const int64_t n = x.dim(0) * x.dim(1) * (x.dim(2) / 2);
  if (n == 0) return;
  BITEXACT_CUDA_CHECK(launch_pdl(rope_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream_of(ctx),
                                 x.data, x.dtype, x.stride[0], x.stride[1], x.dim(1), x.dim(2),
                                 positions.ptr<int32_t>(), cos_sin.data, cos_sin.dtype,
                                 cos_sin.stride[0], interleaved, n));
}

void silu_mul(const ExecContext& ctx, const Tensor& gate_up, Tensor& out) {
  check_float("silu_mul", gate_up);
  check_float("silu_mul", out);
  const int64_t f = out.dim(1), n = out.dim(0) * f;
  if (n == 0) return;
  BITEXACT_CUDA_CHECK(launch_pdl(silu_mul_kernel, dim3(grid_for(n)), dim3(kThreads), 0,
                                 stream_of(ctx), gate_up.data, gate_up.dtype, gate_up.stride[0],
                                 out.data, out.dtype, out.stride[0], f, n));
}

void embedding(const ExecContext& ctx, const Tensor& table, const Tensor& ids, Tensor& out) {
  check_float("embedding", table);
  check_float("embedding", out);
  const int64_t d = out.dim(1), n = out.dim(0) * d;
  if (n == 0) return;
  BITEXACT_CUDA_CHECK(launch_pdl(
      gather_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream_of(ctx), table.data, table.dtype,
      table.stride[0], table.dim(0), ids.ptr<int32_t>(), out.data, out.dtype, out.stride[0], d, n));
}

void gather_rows(const ExecContext& ctx, const Tensor& x, const Tensor& rows, Tensor& out) {
  check_float("gather_rows", x);
  check_float("gather_rows", out);
  const int64_t d = out.dim(1), n = out.dim(0) * d;
  if (n == 0) return;
  BITEXACT_CUDA_CHECK(launch_pdl(gather_kernel, dim3(grid_for(n)), dim3(kThreads), 0,
                                 stream_of(ctx), x.data, x.dtype, x.stride[0], x.dim(0),
                                 rows.ptr<int32_t>(), out.data, out.dtype, out.stride[0], d, n));
}

void kv_cache_write(const ExecContext& ctx, const Tensor& k, const Tensor& v, const Tensor& slots,
                    Tensor& k_cache, Tensor& v_cache) {
  check_float("kv_cache_write", k);
  check_float("kv_cache_write", k_cache);
  if (k.dtype != v.dtype || k_cache.dtype != v_cache.dtype)
    unsupported("kv_cache_write", "k and v (and their caches) must share a dtype");
  for (int i = 0; i < 4; ++i)
    if (k_cache.stride[i] != v_cache.stride[i])
      unsupported("kv_cache_write", "cache layouts differ");
  const int64_t hkv = k.dim(1), dh = k.dim(2), n = k.dim(0) * hkv * dh;
  if (n == 0) return;
  BITEXACT_CUDA_CHECK(launch_pdl(kv_write_kernel, dim3(grid_for(n)), dim3(kThreads), 0,
                                 stream_of(ctx), k.data, v.data, k.dtype, k.stride[0], k.stride[1],
                                 v.stride[0], v.stride[1], slots.ptr<int32_t>(), k_cache.data,
                                 v_cache.data, k_cache.dtype, k_cache.dim(1), k_cache.stride[0],
                                 k_cache.stride[1], k_cache.stride[2], hkv, dh, n));
}

}  // namespace bitexact::ops::cuda
