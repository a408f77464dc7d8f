// Host entry of the Hopper (wgmma + TMA) path of the batch-invariant GEMM, defined in
// linear_wgmma.cu: tile configurations and the launcher that linear.cu calls for
// LinearPath::kWgmma.
#pragma once

#include <cuda_runtime.h>

#include "ops/cuda/linear_kernel.cuh"

namespace bitexact::ops::cuda::linear_detail {

// CTA tiles of the wgmma path. All of them run the same k16 chain per element (the contract of
// linear_kernel.cuh); they differ in speed only. The 128x256 tiles hold no fold registers, so
// they serve plans with one K chunk (S == 1) only. "c2": CTA pairs (clusters) that multicast
// the shared weight tile. "s": split-K work items (runs of K chunks of one tile), chunk
// partials through the split workspace, folded in chunk order by the tile's last item (v5):
// more CTAs than output tiles for narrow weights at M = 32..512. "t" (v6): the output tile is
// staged in shared memory and stored by the bulk tensor engine (fewer stages: t3 = 3 stages),
// so the consumers start the next tile sooner. v7: 64x64t (12 stages): twice the CTAs of 64x128t
// for narrow weights with short K at M = 128..512, where too few output tiles fill the SMs.
enum class WgmmaTile {
  kAuto, k128x128, k128x256, k64x128, k128x64, k128x192, k128x256c2, k128x192c2, k128x128c2,
  k128x128s, k64x128s, k128x64s, k64x64s, k128x256t, k128x256t3, k128x192t, k128x128t,
  k64x128t, k128x64t, k64x64t
};
// True for the split-K tiles.
bool wgmma_tile_is_split(WgmmaTile tile);
// True for the 128x256 tiles, which hold no fold registers (S == 1 only).
bool wgmma_tile_is_wide(WgmmaTile tile);
// Chunks per work item of a split tile for this problem: the fewest that keep the items (output
// tiles x ceil(S / R)) within kWgmmaCtas. A function of (M, N, S, tile) only; speed only.
int wgmma_split_chunks_per_item(int64_t M, int64_t N, int S, int bm, int bn);
const char* wgmma_tile_name(WgmmaTile tile);
// True where a split-K tile beats the plain wgmma tiles and the mma.sync paths (S > 1, few
// output tiles, long K; fitted to bench_gemm --tiles on the H100, docs/notes/gemm.md v5).
bool wgmma_split_pays(int64_t M, int64_t N, int64_t K, int S);
// The split tile the auto rule takes for this problem, kAuto where none pays.
WgmmaTile wgmma_split_tile(int64_t M, int64_t N, int64_t K, int S);
// Off: the auto rules never take the split tiles (the v4 rule; bench_gemm --v4 times both in one
// run). Speed only; on by default.
void set_wgmma_split_auto(bool on);
// On (default, v6): the auto rule picks among the TMA-store epilogue tiles ("t") with their own
// fitted rates; off: the v5 rule (direct stores). Speed only; bench_gemm --v5 times both in one
// run.
void set_wgmma_tma_store_auto(bool on);
// On (default, v7): the auto rule takes 64x64t for narrow weights with K <= 2048 at M >= 128
// where it runs <= 64 CTAs (docs/notes/gemm.md v7); off: the v6 rule. Speed only;
// bench_gemm --v6 times both in one run.
void set_wgmma_v7_auto(bool on);
// The tile kAuto takes for this problem (a function of M, N, K, S only).
WgmmaTile wgmma_auto_tile(int64_t M, int64_t N, int64_t K, int S);

// Launches y = x w^T for p (M, N, K, kc, S, pointers and strides filled in; group_m, and for the
// split tiles partial/counters (the split workspace of linear.cu), are set here).
// Throws kInvalidArgument for k128x256 with S > 1, kInternal if a tensor map cannot be encoded.
void launch_wgmma(LinearParams p, cudaStream_t stream, WgmmaTile tile = WgmmaTile::kAuto);

}  // namespace bitexact::ops::cuda::linear_detail
