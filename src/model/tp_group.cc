// The group of tensor-parallel ranks behind a front Model: one thread per rank runs that rank's
// forward over its shard and its own KV cache; rank 0's outputs are the caller's. A rank that
// fails aborts the communicators so that no other rank waits forever, and the group reconnects
// before the error goes up.
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "model/model_internal.h"
#include "model/tensor_parallel.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::model {
namespace {

void use_device(Device device, int index) {
#ifdef BITEXACT_WITH_CUDA
  if (device == Device::kCuda) ops::cuda::init_cuda_backend(index);
#else
  (void)device, (void)index;
#endif
}

}  // namespace

void Model::TpGroup::connect() {
  const int n = int(ranks.size());
  if (device == Device::kCpu) {
    in_process = std::make_unique<dist::InProcessGroup>(n);
    for (int r = 0; r < n; ++r) ranks[size_t(r)]->tp_->comm = &in_process->rank(r);
    return;
  }
  std::vector<int> devices;
  for (int r = 0; r < n; ++r) devices.push_back(ranks[size_t(r)]->tp_->device_index);
  nccl.reset();
  nccl = std::make_unique<dist::NcclGroup>(devices);
  for (int r = 0; r < n; ++r) ranks[size_t(r)]->tp_->comm = &nccl->rank(r);
}

// The caller's cache defines blocks and slots; each rank keeps the same blocks for its own KV
// heads, so block tables and slots of the batch apply to every rank unchanged. On CPU the
// caller allocated kv_cache_heads() heads: rank r's cache is its contiguous slice of that
// memory (no allocation; it lives as long as the caller's). On CUDA every rank needs memory on
// its own GPU: allocated here, once per caller cache.
std::vector<std::vector<LayerKv>> Model::TpGroup::caches_for(std::span<LayerKv> kv) {
  const int64_t blocks = kv[0].k.dim(0), block_size = kv[0].k.dim(1);
  if (device == Device::kCpu) {
    int64_t total = 0;
    for (auto& m : ranks) total += m->config().num_key_value_heads;
    std::vector<std::vector<LayerKv>> out;
    int64_t head0 = 0;
    for (auto& m : ranks) {
      const io::ModelConfig& rc = m->config();
      std::vector<LayerKv> layers;
      for (const LayerKv& lk : kv) {
        if (lk.k.ndim != 4 || lk.k.dim(2) != total || !lk.k.is_contiguous() ||
            !lk.v.is_contiguous())
          fail(ErrorKind::kInvalidArgument,
               "a tensor-parallel model's KV cache needs kv_cache_heads() = " +
                   std::to_string(total) + " heads per layer, got " + lk.k.shape_str());
        auto carve = [&](const Tensor& t) {
          Tensor v = Tensor::view(
              static_cast<char*>(t.data) +
                  size_t(blocks * block_size * head0 * rc.head_dim) * dtype_size(t.dtype),
              t.dtype, {blocks, block_size, rc.num_key_value_heads, rc.head_dim}, t.device);
          return v;
        };
        layers.push_back({carve(lk.k), carve(lk.v)});
      }
      out.push_back(std::move(layers));
      head0 += rc.num_key_value_heads;
    }
    return out;
  }
  const void* key = kv[0].k.data;
  for (Cache& c : caches)
    if (c.key == key && c.blocks == blocks && c.block_size == block_size) return c.layers;
  Cache c;
  c.key = key;
  c.blocks = blocks;
  c.block_size = block_size;
  for (size_t r = 0; r < ranks.size(); ++r) {
    Model& m = *ranks[r];
    use_device(device, m.tp_->device_index);
    const io::ModelConfig& rc = m.config();
    const DType dt = m.kv_dtype();
    std::vector<LayerKv> layers;
    for (int64_t l = 0; l < rc.num_hidden_layers; ++l) {
      LayerKv lk;
      for (Tensor* t : {&lk.k, &lk.v}) {
        const int64_t n = blocks * block_size * rc.num_key_value_heads * rc.head_dim;
        c.storage.emplace_back(size_t(n) * dtype_size(dt), m.ctx_.device);
        *t = c.storage.back().as(dt, {blocks, block_size, rc.num_key_value_heads, rc.head_dim});
      }
      layers.push_back(lk);
    }
    c.layers.push_back(std::move(layers));
  }
  use_device(device, 0);
  caches.push_back(std::move(c));
  return caches.back().layers;
}

int64_t Model::kv_cache_heads() const {
  if (!group_) return w_.config.num_key_value_heads;
  int64_t total = 0;
  for (auto& m : group_->ranks) total += m->config().num_key_value_heads;
  return total;
}

void Model::TpGroup::forward(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out) {
  std::vector<std::vector<LayerKv>> rank_kv = caches_for(kv);
  const int n = int(ranks.size()), M = b.num_tokens();
  // Embedding rows come from the rank that owns the id's vocabulary shard.
  for (int r = 0; r < n; ++r) {
    TpRank& t = *ranks[size_t(r)]->tp_;
    t.local_ids.assign(size_t(M), 0);
    t.select.resize(size_t(M));
    for (int m = 0; m < M; ++m) {
      const int32_t id = b.token_ids[size_t(m)];
      const int owner = int(id / t.layout.vocab_rows);
      if (owner == r) t.local_ids[size_t(m)] = int32_t(id - t.layout.v_begin);
      t.select[size_t(m)] = owner * M + m;
    }
  }
  // Ranks other than 0 compute the same gathered logits; their copies are dropped.
  std::vector<std::vector<float>> logits(static_cast<size_t>(n)), logprobs(static_cast<size_t>(n));
  std::vector<std::vector<RowTop>> tops(static_cast<size_t>(n));
  std::mutex mu;
  std::exception_ptr first;
  auto run_rank = [&](int r) {
    try {
      use_device(device, ranks[size_t(r)]->tp_->device_index);
      Model& m = *ranks[size_t(r)];
      if (r == 0)
        m.forward(b, rank_kv[0], out.logits, out.logprobs, out.tops);
      else
        m.forward(b, rank_kv[size_t(r)], logits[size_t(r)],
                  out.logprobs ? &logprobs[size_t(r)] : nullptr,
                  out.tops ? &tops[size_t(r)] : nullptr);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu);
      if (first) return;  // a rank woken by the abort: the first error is the one to report
      first = std::current_exception();
      for (auto& m : ranks) m->tp_->comm->abort();
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < n; ++r) threads.emplace_back(run_rank, r);
  run_rank(0);
  for (auto& t : threads) t.join();
  use_device(device, 0);
  if (first) {
    connect();  // the aborted communicators cannot be used again
    std::rethrow_exception(first);
  }
}

void Model::tp_group_forward(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out) {
  group_->forward(b, kv, out);
}

}  // namespace bitexact::model
