// A decoder-only transformer (llama, qwen3) written against the op interface. forward() runs one
// ForwardBatch: embeddings, per layer attention over the paged KV cache and a SwiGLU MLP, then
// logits of the requested rows. Every op is row-wise or batch-invariant, so a row's logits are a
// function of its own tokens and the weights only. On CUDA, pure decode batches replay CUDA
// graphs captured per (batch bucket, context bucket); padding rows never touch real rows.
#pragma once

#include <map>
#include <memory>
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

  // Runs the batch; writes logits of batch.logit_rows as f32 rows into `logits`
  // ([logit_rows.size() * vocab_size], resized), and their log-softmax into `logprobs` when
  // given (computed on the model's device: the sampler then skips a pass over the vocabulary).
  void forward(const ForwardBatch& batch, std::span<LayerKv> kv, std::vector<float>& logits,
               std::vector<float>* logprobs = nullptr);

  static constexpr int kMaxGraphBatch = 256;

 private:
  struct Workspace;
  struct DeviceBatch;
  struct Graphs;
  // The layers and the LM head over device-resident batch metadata: everything that a graph
  // captures.
  void run(const DeviceBatch& b, std::span<LayerKv> kv, Workspace& ws);
  DeviceBatch upload(const ForwardBatch& b, Workspace& ws);
  bool try_graph(const ForwardBatch& b, std::span<LayerKv> kv, std::vector<float>& logits,
                 std::vector<float>* logprobs);
  void copy_logits(Workspace& ws, int rows, std::vector<float>& logits, std::vector<float>* logprobs);

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
