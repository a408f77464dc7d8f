// CUDA-graph decode: a batch where every token wants its logits (decode steps) is padded to a
// bucket of 1..256 rows and a context bucket, and replayed from a graph captured once per
// bucket. Padding rows read and write only the caller's scratch KV slot, and every kernel is
// row-wise or batch-invariant, so real rows get the same bits as in eager mode (I7).
#include <algorithm>

#include "model/model_internal.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/attention_control.cuh"
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::model {

namespace {
int next_pow2(int v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}
}  // namespace

bool Model::try_graph(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out) {
#ifndef BITEXACT_WITH_CUDA
  (void)b, (void)kv, (void)out;
  return false;
#else
  const int M = b.num_tokens();
  if (ctx_.device != Device::kCuda || !options_.cuda_graphs || b.scratch_slot < 0 || M > kMaxGraphBatch ||
      int(b.logit_rows.size()) != M)
    return false;
  for (int i = 0; i < M; ++i)
    if (b.logit_rows[i] != i) return false;
  const io::ModelConfig& c = w_.config;
  const int bs = int(kv[0].k.dim(1));
  const int batch = next_pow2(M);
  const int context = std::min(std::max(256, next_pow2(b.max_position())), max_positions_);
  const int cap = (context + bs - 1) / bs;  // block-table width of the bucket
  Graphs& g = *graphs_;

  // Sized once for the largest bucket, so the buffers never move under a graph.
  const int max_cap = (max_positions_ + bs - 1) / bs;
  g.ws.ensure(c, ctx_.device, kMaxGraphBatch, kMaxGraphBatch, kMaxGraphBatch * max_cap);
  // The partial buffers for the largest bucket, reserved before any capture.
  ops::cuda::reserve_attention_workspace(kMaxGraphBatch, max_positions_, c.num_attention_heads, c.head_dim);
  // Graphs hold raw pointers: drop them all if the KV cache moved or a kernel scratch buffer was
  // reallocated (by an eager step of a larger shape, or the warm-up of a new bucket below).
  auto drop_stale = [&] {
    if (g.kv_data == kv[0].k.data && g.workspace_epoch == ops::cuda::workspace_epoch()) return;
    for (auto& [key, exec] : g.execs) ops::cuda::graph_destroy(exec);
    g.execs.clear();
    g.kv_data = kv[0].k.data;
    g.workspace_epoch = ops::cuda::workspace_epoch();
  };
  drop_stale();

  // The padded batch: row r < M is token r with its own sequence's blocks; padding rows use the
  // scratch block.
  const int32_t scratch_block = b.scratch_slot / bs;
  g.ids.assign(size_t(batch), 0);
  g.pos.assign(size_t(batch), 0);
  g.seq.resize(size_t(batch));
  g.slots.assign(size_t(batch), b.scratch_slot);
  g.table.assign(size_t(batch) * size_t(cap), scratch_block);
  for (int r = 0; r < batch; ++r) g.seq[r] = r;
  for (int r = 0; r < M; ++r) {
    g.ids[r] = b.token_ids[r];
    g.pos[r] = b.positions[r];
    g.slots[r] = b.slots[r];
    const int32_t* row = b.block_table.data() + size_t(b.token_seq[r]) * size_t(b.max_blocks);
    std::copy(row, row + std::min(cap, b.max_blocks), g.table.begin() + size_t(r) * size_t(cap));
  }
  ForwardBatch padded;
  padded.token_ids = g.ids;
  padded.positions = g.pos;
  padded.token_seq = g.seq;
  padded.slots = g.slots;
  padded.block_table = g.table;
  padded.num_seqs = batch;
  padded.max_blocks = cap;
  for (int r = 0; r < batch; ++r) padded.logit_rows.push_back(r);
  DeviceBatch d = upload(padded, g.ws);
  d.max_positions = context;  // the grid covers the bucket; kernels read each token's own length

  auto key = std::make_pair(batch, context);
  auto it = g.execs.find(key);
  if (it == g.execs.end()) {
    run(d, kv, g.ws);  // eager warm-up: lets every op size its caches outside the capture
    drop_stale();      // ... which may have moved buffers that other buckets' graphs use
    ops::cuda::graph_begin_capture(ctx_);
    run(d, kv, g.ws);
    it = g.execs.emplace(key, ops::cuda::graph_end_capture(ctx_)).first;
  }
  ops::cuda::graph_launch(ctx_, it->second);
  finish_outputs(g.ws, b, M, out);  // the padding rows' logits are never read
  return true;
#endif
}

}  // namespace bitexact::model
