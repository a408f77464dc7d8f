// A decoder-only transformer (llama, qwen3) written against the op interface. forward() runs one
// ForwardBatch: embeddings, per layer attention over the paged KV cache and a SwiGLU MLP, then
// logits of the requested rows. Every op is row-wise or batch-invariant, so a row's logits are a
// function of its own tokens and the weights only.
#pragma once

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
  // ([logit_rows.size() * vocab_size], resized).
  void forward(const ForwardBatch& batch, std::span<LayerKv> kv, std::vector<float>& logits);

 private:
  struct Workspace;
  void ensure_workspace(int tokens, int logit_rows, int table_len);
  Tensor upload_i32(const std::vector<int32_t>& host, Buffer& dev, int64_t n);

  ModelWeights w_;
  ops::ExecContext ctx_;
  int max_positions_ = 0;
  Buffer rope_buf_;
  Tensor rope_;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace bitexact::model
