// What a command needs to run a model: the model, its tokenizer when it has one, and the stop
// ids, loaded from a Hugging Face folder or a GGUF file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace bitexact::apps {

struct ModelSession {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;  // null when the checkpoint ships none
  std::vector<int32_t> eos_ids;               // generation_config.json, else config, else tokenizer
};

// Loading flags shared by serve and generate: `--load-format dummy` (config.json only, random
// weights of the real shapes: benchmarks without a checkpoint, as vLLM's) and `--enforce-eager`
// (no CUDA graphs).
struct LoadFlags {
  std::string load_format = "auto";
  bool enforce_eager = false;
  void add_to(CLI::App& app);
  void apply(model::ModelOptions& options) const;
};

// Tensor parallelism, shared by generate, serve and verify: `--tensor-parallel-size N` (ranks
// are threads on CPU, GPUs 0..N-1 over NCCL on CUDA) and `--tp-invariant` (the fixed 8-part
// split at TP = 1 too, so that one device gives the bits of every degree).
struct ParallelFlags {
  int tensor_parallel_size = 1;
  bool tp_invariant = false;
  void add_to(CLI::App& app);
  void apply(model::ModelOptions& options) const;
};

ModelSession open_model(const std::string& path, const model::ModelOptions& options);
Device parse_device(const std::string& name);

}  // namespace bitexact::apps
