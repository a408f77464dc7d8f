// ops::cuda::moe_route with its launch path made explicit, for the tests that prove the paths
// write the same bits and for benchmarks. The op (cuda_ops.h) picks the path by moe_route_fused.
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace bitexact::ops::cuda {

enum class MoeRoutePath {
  kAuto,   // the first of kTiny, kFused, kSplit that takes the batch
  kFused,  // one CTA routes every token and groups the rows: one launch (small batches)
  kSplit,  // a routing grid (one warp per token), then one grouping CTA: two launches
  kTiny,   // decode: a warp per token, then one warp groups the <= 32 rows by shuffles
};

// Whether the one-launch path takes a batch of M tokens, E experts, top-k (by the batch's size
// only: the path never changes a bit, it only changes the speed).
bool moe_route_fused(int64_t M, int64_t E, int64_t k);
// Whether the tiny path takes it (M <= 4 tokens, M * k <= 32 rows).
bool moe_route_tiny(int64_t M, int64_t E, int64_t k);

void moe_route_path(const ExecContext& ctx, const Tensor& router_logits, bool norm_topk_prob,
                    MoeRouting& routing, MoeRoutePath path);

}  // namespace bitexact::ops::cuda
