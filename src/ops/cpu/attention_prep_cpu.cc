// CPU qk_norm_rope_kv_write: the attention preamble (q/k RMSNorm, rotary embedding, KV cache
// write). The CPU backend is the reference, so it is literally the five CPU ops in the model's
// order; the fused CUDA kernel is tested against the five CUDA ops and against this.
#include "ops/cpu/cpu_ops.h"

namespace bitexact::ops::cpu {

void qk_norm_rope_kv_write(const ExecContext& ctx, Tensor& q, Tensor& k, const Tensor& v,
                           const Tensor* q_norm, const Tensor* k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                           const Tensor& slots, Tensor& k_cache, Tensor& v_cache) {
  if (q_norm) cpu::rms_norm(ctx, q, *q_norm, eps, q);
  if (k_norm) cpu::rms_norm(ctx, k, *k_norm, eps, k);
  cpu::rope(ctx, q, positions, cos_sin, interleaved);
  cpu::rope(ctx, k, positions, cos_sin, interleaved);
  cpu::kv_cache_write(ctx, k, v, slots, k_cache, v_cache);
}

}  // namespace bitexact::ops::cpu
