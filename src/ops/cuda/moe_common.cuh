// What the CUDA MoE files share: the layout of MoeRouting::groups, written by the routing
// (moe_route.cu) and read by the expert GEMM (moe.cu): offsets [E+1], grouped rows [R], then two
// tile maps of 16- and 64-row tiles of one expert each (ops.h's moe_groups_len reserves both).
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/cuda/cuda_common.cuh"

namespace bitexact::ops::cuda::moe_detail {

constexpr int kTileSmall = 16, kTileLarge = 64;

// An upper bound on the tiles of `rows` rows over `experts` groups (a partial tile per expert).
inline int64_t tile_bound(int64_t rows, int64_t experts, int64_t tile) {
  return (rows + tile - 1) / tile + std::min(experts, rows);
}

// Where each part of the groups tensor starts. A tile map is [count, (expert, first entry)...].
struct GroupsLayout {
  int64_t offsets, rows, tiles_small, tiles_large;
  GroupsLayout(int64_t R, int64_t E) {
    offsets = 0;
    rows = E + 1;
    tiles_small = rows + R;
    tiles_large = tiles_small + 1 + 2 * tile_bound(R, E, kTileSmall);
  }
};


}  // namespace bitexact::ops::cuda::moe_detail
