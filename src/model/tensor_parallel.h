// Private parts of Model for tensor parallelism (tp_model.cc, tp_group.cc): the state a rank
// keeps beside its sharded weights (TpRank), and the group of ranks a front Model drives
// (TpGroup). See docs/notes/tensor_parallel.md for the design and the invariance argument.
#pragma once

#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "dist/communicator.h"
#include "dist/in_process_communicator.h"
#include "dist/nccl_communicator.h"
#include "model/model.h"
#include "model/tp_shard.h"

namespace bitexact::model {

struct Model::TpRank {
  TpLayout layout;
  io::ModelConfig full;                         // the unsharded model's shapes
  std::vector<std::vector<Tensor>> wo_parts;    // [layer][local part] (tp_shard.h)
  std::vector<std::vector<Tensor>> down_parts;  // [layer][local part]
  dist::Communicator* comm = nullptr;           // owned by the group; rebound after a failure
  std::unique_ptr<ThreadPool> pool;  // CPU: this rank's workers (pools are not reentrant)
  int device_index = 0;              // CUDA: the rank's GPU

  // Per-forward inputs the group computes from the host batch (embedding of a vocab shard).
  std::vector<int32_t> local_ids;  // [M] id - v_begin where this rank owns the id, else 0
  std::vector<int32_t> select;     // [M] owner * M + m: row of the gathered embeddings to keep

  // Scratch, grown as batches grow (no CUDA graphs for TP ranks yet, so moving is fine).
  Buffer partials;  // [P, rows, H]: the K parts' partial products, gathered in part order
  Buffer gathered;  // [size, M, H] embeddings, or [size, R, vocab_rows] logits
  Buffer ids_dev, select_dev;  // CUDA copies of local_ids and select

  // Grows `buf` to at least `bytes` on `dev`.
  static void ensure(Buffer& buf, size_t bytes, Device dev) {
    if (buf.size() < bytes) buf = Buffer(bytes, dev);
  }
};

struct Model::TpGroup {
  std::vector<std::unique_ptr<Model>> ranks;
  Device device = Device::kCpu;
  std::unique_ptr<dist::InProcessGroup> in_process;  // CPU ranks
  std::unique_ptr<dist::NcclGroup> nccl;             // CUDA ranks

  // CUDA: each rank's KV cache on its GPU, mirroring the caller's (same blocks, block size and
  // slots; the rank's own KV heads). Keyed by the caller's cache so that several engines may
  // share one model; kept until the group goes (one per engine in practice).
  struct Cache {
    const void* key = nullptr;
    int64_t blocks = 0, block_size = 0;
    std::vector<Buffer> storage;
    std::vector<std::vector<LayerKv>> layers;  // [rank][layer]
  };
  std::vector<Cache> caches;

  void connect();  // (re)creates the communicators and hands one to each rank
  std::vector<std::vector<LayerKv>> caches_for(std::span<LayerKv> kv);  // [rank][layer]
  void forward(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out);
};

}  // namespace bitexact::model
