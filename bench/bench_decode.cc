// CPU (or CUDA) decode throughput of a model: single-stream tokens/s and batched tokens/s,
// with the engine's simple batched loop. Usage: bench_decode MODEL [--device cpu|cuda]
// [--tokens N] [--batch B] [--no-batch-invariant] [--load-format dummy] [--enforce-eager]. Prints one line per configuration.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/batch_generator.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

using namespace bitexact;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_decode MODEL [--device cpu|cuda] [--tokens N] [--batch B] [--no-batch-invariant]\n");
    return 2;
  }
  model::ModelOptions opt;
  int tokens = 128, batch = 16;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-batch-invariant")) opt.batch_invariant = false;
    else if (!std::strcmp(argv[i], "--enforce-eager")) opt.cuda_graphs = false;
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
    engine::BatchGenerator gen(*m, batch * ((prompt_len + tokens) / 16 + 2), 16, {});
    for (int b : {1, batch}) {
      std::vector<engine::GenerateRequest> reqs;
      for (int r = 0; r < b; ++r) {
        engine::GenerateRequest q;
        for (int i = 0; i < prompt_len; ++i) q.prompt.push_back(3 + (r * 31 + i * 7) % int(m->config().vocab_size - 3));
        q.params.max_tokens = tokens;
        q.params.temperature = 0;
        q.params.ignore_eos = true;
        reqs.push_back(q);
      }
      gen.generate(reqs);  // warm-up
      auto t0 = std::chrono::steady_clock::now();
      gen.generate(reqs);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s batch=%d tokens=%d: %.1f tok/s (%.3f ms/step)\n", argv[1], b, tokens, b * tokens / s,
                  1e3 * s / tokens);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
