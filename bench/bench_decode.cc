// CPU (or CUDA) decode throughput of a model through the continuous-batching engine (the path
// `serve` and `generate` use, sampling included): single-stream and batched tokens/s over the
// decode steps, after a warm-up run. Usage: bench_decode MODEL [--device cpu|cuda] [--tokens N]
// [--batch B] [--no-batch-invariant] [--load-format dummy] [--enforce-eager] [--host-sampling]
// [--no-pdl] [--no-cluster-fold] [--no-norm-fusion] [--no-swiglu-fusion] [--tensor-parallel-size N].
// Prints one line per configuration.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/engine.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_cuda.cuh"
#endif

using namespace bitexact;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_decode MODEL [--device cpu|cuda] [--tokens N] [--batch B] [--no-batch-invariant]\n");
    return 2;
  }
  model::ModelOptions opt;
  int tokens = 128, batch = 16;
  bool host_sampling = false;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-batch-invariant")) opt.batch_invariant = false;
    else if (!std::strcmp(argv[i], "--enforce-eager")) opt.cuda_graphs = false;
    else if (!std::strcmp(argv[i], "--host-sampling")) host_sampling = true;
    else if (!std::strcmp(argv[i], "--tensor-parallel-size") && i + 1 < argc)
      opt.tensor_parallel_size = std::atoi(argv[++i]);
#ifdef BITEXACT_WITH_CUDA
    else if (!std::strcmp(argv[i], "--no-pdl")) ops::cuda::set_pdl(false);  // A/B timing only
    else if (!std::strcmp(argv[i], "--no-cluster-fold"))  // A/B timing only
      ops::cuda::linear_detail::set_linear_cluster_fold(false);
    else if (!std::strcmp(argv[i], "--no-norm-fusion"))  // A/B timing only
      ops::cuda::set_norm_linear_fusion(false);
    else if (!std::strcmp(argv[i], "--no-swiglu-fusion"))  // A/B timing only
      ops::cuda::set_swiglu_linear_fusion(false);
#endif
    else if (!std::strcmp(argv[i], "--load-format") && i + 1 < argc) opt.dummy_weights = !std::strcmp(argv[++i], "dummy");
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) {
      if (!std::strcmp(argv[++i], "cuda")) {
#ifdef BITEXACT_WITH_CUDA
        ops::cuda::init_cuda_backend(0);
        opt.device = Device::kCuda;
#else
        std::fprintf(stderr, "no CUDA in this build\n");
        return 2;
#endif
      }
    }
  }
  try {
    auto m = model::Model::load(argv[1], opt);
    const int prompt_len = 16;
    engine::EngineConfig ec;
    ec.max_num_seqs = batch;
    ec.num_kv_blocks = batch * ((prompt_len + tokens) / 16 + 2) + 1;
    ec.enable_prefix_caching = false;
    ec.device_greedy = !host_sampling;
    engine::Engine eng(*m, nullptr, ec);
    for (int b : {1, batch}) {
      double host_ms = 0;
      auto run = [&](const std::string& tag) {
        for (int r = 0; r < b; ++r) {
          engine::RequestSpec q;
          q.id = tag + std::to_string(r);
          for (int i = 0; i < prompt_len; ++i) q.prompt.push_back(3 + (r * 31 + i * 7) % int(m->config().vocab_size - 3));
          q.params.max_tokens = tokens;
          q.params.temperature = 0;
          q.params.ignore_eos = true;
          eng.add_request(q);
        }
        eng.step();  // the prefill step, not timed
        const engine::EngineStats s0 = eng.stats();
        const auto t0 = std::chrono::steady_clock::now();
        int steps = 0;
        while (eng.has_unfinished()) eng.step(), ++steps;
        const engine::EngineStats s1 = eng.stats();
        host_ms = 1e3 * ((s1.step_seconds - s0.step_seconds) - (s1.forward_seconds - s0.forward_seconds)) / steps;
        return std::make_pair(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), steps);
      };
      run("warm");
      auto [s, steps] = run("timed");
      // host: the engine's own work per step outside Model::forward (scheduling, sampling).
      std::printf("%s batch=%d tokens=%d: %.1f tok/s (%.3f ms/step; host %.3f ms/step)\n", argv[1], b,
                  tokens, double(b) * steps / s, 1e3 * s / steps, host_ms);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
