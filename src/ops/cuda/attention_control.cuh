// Host-side controls of CUDA attention that are not part of ops.h: the scratch workspace for
// chunk partials (reserve it before capturing a CUDA graph) and, for tests, forcing one grid.
// Plain C++ declarations, includable from .cc files.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bitexact::ops::cuda {

// Which attention grid runs. kAuto picks by shape (speed only: all give equal bits); its prefill
// grid is the wgmma one. kFused forces the mma.sync prefill grid (attention_fused.cuh), kWgmma the
// wgmma prefill grid (attention_prefill_wgmma.cuh), kSplit the decode / split family.
enum class AttentionPath { kAuto, kSplit, kFused, kWgmma };
void set_attention_path(AttentionPath path);
// The split grid runs several chunks per CTA with prefetch (default) or one chunk per CTA; the
// bits are the same, tests compare both.
void set_attention_streaming(bool on);
// The fused (prefill) grid's shape: 0 = 8 warps x 4 K/V sub-tiles in flight (default),
// 1 = 4 warps x 2, 2 = 8 warps x 2. Speed only; tests compare the bits.
void set_attention_fused_config(int config);
// Tests only: the wgmma prefill grid merges every 64-key sub-tile straight into the running
// partial instead of chunk by chunk (breaking rule 4), a different sum order whose bits must differ:
// the proof that the bitwise comparisons can fail.
void set_attention_wgmma_flat_merge(bool on);
// The decode grid (invariant mode, when the fused grid is not chosen). kDecodeAuto picks by shape;
// kDecodeLegacy runs the stream / split grids above (with their merge kernel); 0 ..
// attention_decode_variants() - 1 force one configuration of attention_decode.cuh (ring depth,
// cp.async or TMA, warps and kv heads per CTA), and a shape: `spw` > 0 (a multiple of 4)
// sub-tiles per warp (warp-chunk), or `cpc` > 0 chunks per CTA (CTA-chunk); both 0: chosen by
// shape. `fold`: who folds the chunk partials, 1 = the last CTA to arrive, 2 = merge_chunks_kernel
// launched after; 0 = chosen. `tail` (warp-chunk shape only): the last `tail` chunks of every
// token go to CTAs launched after the others, one chunk per CTA with 4 warps per chunk (the
// CTA-chunk shape), so the grid ends on short-lived CTAs; -1 = chosen, 0 = none (one chunk always
// stays in the main part). Speed only; tests compare the bits of all of them.
// kDecodeTile4 runs attention_tile4.cuh (a CTA of 4 warps per sub-tile, a cluster per chunk;
// spw / cpc / fold / tail are ignored): the tiniest grids' decode.
constexpr int kDecodeAuto = -1, kDecodeLegacy = -2, kDecodeTile4 = -3;
void set_attention_decode(int variant, int spw = 0, int cpc = 0, int fold = 0, int tail = -1);
int attention_decode_variants();

// Grows the chunk-partial workspace to cover a batch of `tokens` query tokens with up to
// `max_positions` keys each, `q_heads` heads of `head_dim`. attention() grows it on demand when it
// runs eagerly; during graph capture it cannot allocate and throws if the workspace is too small.
void reserve_attention_workspace(int64_t tokens, int64_t max_positions, int64_t q_heads,
                                 int64_t head_dim);
size_t attention_workspace_bytes();

}  // namespace bitexact::ops::cuda
