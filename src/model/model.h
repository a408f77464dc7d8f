// A decoder-only transformer (llama, qwen3) written against the op interface. forward() runs one
// ForwardBatch: embeddings, per layer attention over the paged KV cache and a SwiGLU MLP, then
// logits of the requested rows. Every op is row-wise or batch-invariant, so a row's logits are a
// function of its own tokens and the weights only. On CUDA, pure decode batches replay CUDA
// graphs captured per (batch bucket, context bucket); padding rows never touch real rows.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/forward_batch.h"
#include "model/weights.h"
#include "ops/ops.h"

namespace bitexact::model {

struct ModelOptions {
  Device device = Device::kCpu;
  bool batch_invariant = true;
  int max_positions = 0;  // 0: max_position_embeddings (capped at 32768 to bound the rope table)
  bool dummy_weights = false;  // config.json only; random bf16 weights (--load-format dummy)
  bool cuda_graphs = true;     // CUDA: replay decode steps from graphs (--enforce-eager: off)
  // Tensor parallelism (docs/notes/tensor_parallel.md): 1, 2, 4 or 8 ranks; threads over an
  // in-process communicator on CPU, GPUs 0..N-1 over NCCL on CUDA (tp_cuda_test passed on 2 H200).
  int tensor_parallel_size = 1;
  // Row-parallel layers (o_proj, down_proj) cut K into kTpParts = 8 fixed parts and every rank
  // folds the 8 gathered partials in one order, so TP = 1, 2, 4, 8 give equal bits. Unset: on
  // when tensor_parallel_size > 1; off at 1, where the plain unsplit GEMM saves 2 x 8 launches
  // and a fold per layer (its bits then differ from the split's). Set to true at 1 to get the
  // bits of every TP degree on one device; false at N > 1 folds one partial per rank (an
  // all-reduce's TP-dependent bits: to measure, and to show the TP tests can fail).
  std::optional<bool> tp_invariant;
};

class Model {
 public:
  Model(ModelWeights weights, const ModelOptions& options);
  ~Model();
  static std::unique_ptr<Model> load(const std::string& path, const ModelOptions& options);

  const io::ModelConfig& config() const { return w_.config; }
  const ops::ExecContext& context() const { return ctx_; }
  int max_positions() const { return max_positions_; }
  DType kv_dtype() const { return ctx_.device == Device::kCpu ? DType::kF32 : DType::kBF16; }
  // KV heads per layer of the paged cache the caller allocates for forward(): the model's KV
  // heads, or for a tensor-parallel front the sum of its ranks' (each rank's cache is its slice
  // of that memory on CPU; tp_group.cc).
  int64_t kv_cache_heads() const;

  // Runs the batch; writes logits of batch.logit_rows as f32 rows into `logits`
  // ([logit_rows.size() * vocab_size], resized), and their log-softmax into `logprobs` when
  // given (computed on the model's device: the sampler then skips a pass over the vocabulary).
  // Rows with batch.row_top_n[i] >= 0 fill tops[i] instead (resized to logit_rows; requires
  // `logprobs` and `tops`); their rows of `logits` and `logprobs` are left unspecified.
  void forward(const ForwardBatch& batch, std::span<LayerKv> kv, std::vector<float>& logits,
               std::vector<float>* logprobs = nullptr, std::vector<RowTop>* tops = nullptr);

  // Weight updates (weight_update.cc). check_replacement throws Error(kInvalidArgument) naming
  // the first tensor whose dtype or shape differs from the current weights'. replace_weights
  // checks, waits for the device, swaps (the config stays) and drops the CUDA graphs, which
  // captured the old weights' addresses. The caller makes sure no forward runs meanwhile.
  void check_replacement(const ModelWeights& weights) const;
  void replace_weights(ModelWeights weights);

  static constexpr int kMaxGraphBatch = 256;

 private:
  struct Workspace;
  struct DeviceBatch;
  struct Graphs;
  // The layers and the LM head over device-resident batch metadata: everything that a graph
  // captures.
  void run(const DeviceBatch& b, std::span<LayerKv> kv, Workspace& ws);
  DeviceBatch upload(const ForwardBatch& b, Workspace& ws);
  struct Outputs {  // forward()'s output arguments
    std::vector<float>& logits;
    std::vector<float>* logprobs;
    std::vector<RowTop>* tops;
  };
  bool try_graph(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out);
  // Brings the first `rows` logit rows of `ws` back as b.row_top_n asks.
  void finish_outputs(Workspace& ws, const ForwardBatch& b, int rows, const Outputs& out);

  // Tensor parallelism (tensor_parallel.h, tp_model.cc): a rank runs run() on its shard with
  // these steps in place of the unsharded ones; a front Model hands forward() to its group.
  struct TpRank;
  struct TpGroup;
  static std::unique_ptr<Model> load_tensor_parallel(const std::string& path, const ModelOptions& options);
  void tp_group_forward(const ForwardBatch& b, std::span<LayerKv> kv, const Outputs& out);
  void tp_embed(const DeviceBatch& b, Tensor& resid);
  // y = x * W^T for the layer's row-parallel weight (o_proj, or the dense down_proj) from its
  // K parts: local partials, all_gather, fixed-order fold. x: this rank's local columns.
  void tp_row_parallel(const Tensor& x, size_t layer, bool mlp, Tensor& y);
  void tp_moe_block(const LayerWeights& L, size_t layer, const Tensor& x, Workspace& ws, Tensor& out);
  void tp_lm_head(const Tensor& last, Tensor& logits);
  // The rows of the unsharded weight, whose K order a column shard keeps (ops::linear's
  // plan_rows); 0 when not sharded.
  enum class TpColumn { kQkv, kGateUp };
  int64_t tp_plan_rows(TpColumn which) const;
  std::shared_ptr<TpRank> tp_;     // set on a rank
  std::shared_ptr<TpGroup> group_;  // set on a front Model

  ModelWeights w_;
  ops::ExecContext ctx_;
  ModelOptions options_;
  int max_positions_ = 0;
  Buffer rope_buf_;
  Tensor rope_;
  std::unique_ptr<Workspace> ws_;
  std::unique_ptr<Graphs> graphs_;
};

}  // namespace bitexact::model
