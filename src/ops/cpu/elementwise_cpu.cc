// CPU element-wise and data-movement ops: rotary embedding, SiLU-and-multiply, embedding
// gather, row gather, paged KV cache writes and dtype-converting copies. None reduces across
// rows, so each output row is a function of its own input row.
#include <cmath>
#include <cstring>

#include "core/philox.h"
#include "core/thread_pool.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/rows.h"

namespace bitexact::ops::cpu {
namespace {

ThreadPool& pool_of(const ExecContext& ctx) { return ctx.pool ? *ctx.pool : default_thread_pool(); }

float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kI32: return float(static_cast<const int32_t*>(p)[i]);
  }
  return 0;
}

void store_from_f32(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = v; break;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
    case DType::kI32: static_cast<int32_t*>(p)[i] = int32_t(v); break;
  }
}

// Copies one row of n elements converting dtypes (a plain memcpy when they agree).
void convert_row(const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (st == dt) {
    std::memcpy(dst, src, size_t(n) * dtype_size(st));
    return;
  }
  for (int64_t i = 0; i < n; ++i) store_from_f32(dst, dt, i, load_as_f32(src, st, i));
}

char* byte_row(const Tensor& t, int64_t r) {
  return static_cast<char*>(t.data) + size_t(r * t.stride[0]) * dtype_size(t.dtype);
}

}  // namespace

void rope(const ExecContext& ctx, Tensor& x, const Tensor& positions, const Tensor& cos_sin,
          bool interleaved) {
  const int64_t heads = x.dim(1), dh = x.dim(2), half = dh / 2;
  const int32_t* pos = positions.ptr<int32_t>();
  pool_of(ctx).parallel_for(x.dim(0) * heads, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* v = row_ptr<float>(x, r);
      const float* cs = cos_sin.ptr<float>() + int64_t(pos[r / heads]) * cos_sin.stride[0];
      for (int64_t i = 0; i < half; ++i) {
        float c = cs[i], s = cs[half + i];
        int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x1 = v[a], x2 = v[b];
        v[a] = x1 * c - x2 * s;
        v[b] = x2 * c + x1 * s;
      }
    }
  });
}

void silu_mul(const ExecContext& ctx, const Tensor& gate_up, Tensor& out) {
  const int64_t f = out.dim(1);
  pool_of(ctx).parallel_for(out.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gate_up.ptr<float>() + r * gate_up.stride[0];
      float* o = out.ptr<float>() + r * out.stride[0];
      for (int64_t i = 0; i < f; ++i) {
        float silu = g[i] / (1.0f + std::exp(-g[i]));
        o[i] = silu * g[f + i];
      }
    }
  });
}

void embedding(const ExecContext& ctx, const Tensor& table, const Tensor& ids, Tensor& out) {
  const int64_t d = table.dim(1);
  const int32_t* id = ids.ptr<int32_t>();
  pool_of(ctx).parallel_for(out.dim(0), 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      convert_row(byte_row(table, id[r]), table.dtype, byte_row(out, r), out.dtype, d);
  });
}

void gather_rows(const ExecContext& ctx, const Tensor& x, const Tensor& rows, Tensor& out) {
  const int32_t* idx = rows.ptr<int32_t>();
  pool_of(ctx).parallel_for(out.dim(0), 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      convert_row(byte_row(x, idx[r]), x.dtype, byte_row(out, r), out.dtype, x.dim(1));
  });
}

void kv_cache_write(const ExecContext& ctx, const Tensor& k, const Tensor& v, const Tensor& slots,
                    Tensor& k_cache, Tensor& v_cache) {
  const int64_t block_size = k_cache.dim(1), hkv = k.dim(1), dh = k.dim(2);
  const int32_t* slot = slots.ptr<int32_t>();
  pool_of(ctx).parallel_for(k.dim(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = slot[r] / block_size, o = slot[r] % block_size;
      for (int64_t h = 0; h < hkv; ++h) {
        int64_t dst = b * k_cache.stride[0] + o * k_cache.stride[1] + h * k_cache.stride[2];
        convert_row(row_ptr<float>(k, r * hkv + h), DType::kF32,
                    static_cast<char*>(k_cache.data) + dst * dtype_size(k_cache.dtype), k_cache.dtype, dh);
        convert_row(row_ptr<float>(v, r * hkv + h), DType::kF32,
                    static_cast<char*>(v_cache.data) + dst * dtype_size(v_cache.dtype), v_cache.dtype, dh);
      }
    }
  });
}

void fill_uniform(const ExecContext& ctx, Tensor& t, uint64_t seed, float scale, float offset) {
  pool_of(ctx).parallel_for(t.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) store_from_f32(t.data, t.dtype, i, philox_symmetric(seed, uint64_t(i), scale, offset));
  });
}

void copy(const ExecContext& ctx, const Tensor& src, Tensor& dst) {
  (void)ctx;
  if (src.is_contiguous() && dst.is_contiguous()) {
    convert_row(src.data, src.dtype, dst.data, dst.dtype, src.numel());
    return;
  }
  // Rank-2 strided copy (e.g. a row slice); higher ranks must be contiguous.
  BITEXACT_CHECK(src.ndim == 2 && dst.ndim == 2, "strided copy needs rank 2");
  for (int64_t r = 0; r < src.dim(0); ++r)
    convert_row(byte_row(src, r), src.dtype, byte_row(dst, r), dst.dtype, src.dim(1));
}

void synchronize(const ExecContext&) {}

}  // namespace bitexact::ops::cpu
