// Loading a model with its tokenizer and end-of-sequence ids.
#include "apps/model_session.h"

#include <filesystem>

#include "io/model_config.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace bitexact::apps {

namespace fs = std::filesystem;

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") {
#ifdef BITEXACT_WITH_CUDA
    ops::cuda::init_cuda_backend(0);
    return Device::kCuda;
#else
    fail(ErrorKind::kUnsupported, "--device cuda: this build has no CUDA backend");
#endif
  }
  fail(ErrorKind::kInvalidArgument, "--device must be cpu or cuda, got `" + name + "`");
}

void LoadFlags::add_to(CLI::App& app) {
  app.add_option("--load-format", load_format, "auto (the checkpoint) or dummy (random weights, config.json only)")
      ->check(CLI::IsMember({"auto", "dummy"}))
      ->capture_default_str();
  app.add_flag("--enforce-eager", enforce_eager, "CUDA: run every step eagerly, without CUDA graphs");
}

void LoadFlags::apply(model::ModelOptions& options) const {
  options.dummy_weights = load_format == "dummy";
  options.cuda_graphs = !enforce_eager;
}

void ParallelFlags::add_to(CLI::App& app) {
  app.add_option("--tensor-parallel-size", tensor_parallel_size,
                 "ranks of tensor parallelism: 1, 2, 4 or 8 (CPU: threads; CUDA: GPUs over NCCL)")
      ->check(CLI::IsMember({1, 2, 4, 8}))
      ->capture_default_str();
  app.add_flag("--tp-invariant", tp_invariant,
               "split row-parallel layers in 8 fixed parts even at TP=1 (the bits of every TP size; "
               "always on at TP>1)");
}

void ParallelFlags::apply(model::ModelOptions& options) const {
  options.tensor_parallel_size = tensor_parallel_size;
  if (tp_invariant) options.tp_invariant = true;
}

ModelSession open_model(const std::string& path, const model::ModelOptions& options) {
  if (!fs::exists(path)) fail(ErrorKind::kIo, "model path `" + path + "` does not exist");
  ModelSession s;
  s.model = model::Model::load(path, options);
  const bool is_gguf = fs::is_regular_file(path);
  if (is_gguf || fs::exists(fs::path(path) / "tokenizer.json")) s.tokenizer = tok::load_tokenizer(path);
  if (!is_gguf) {
    io::GenerationConfig gen = io::load_generation_config((fs::path(path) / "generation_config.json").string());
    for (int64_t id : gen.eos_token_ids) s.eos_ids.push_back(int32_t(id));
  }
  if (s.eos_ids.empty())
    for (int64_t id : s.model->config().eos_token_ids) s.eos_ids.push_back(int32_t(id));
  if (s.eos_ids.empty() && s.tokenizer && s.tokenizer->eos_id()) s.eos_ids.push_back(*s.tokenizer->eos_id());
  return s;
}

}  // namespace bitexact::apps
