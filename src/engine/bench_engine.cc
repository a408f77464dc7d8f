// engine_bench: CPU numbers for docs/notes/engine.md. (1) Scheduler overhead per step, i.e.
// step() time minus the forward, with 1, 64 and 256 running requests in decode; (2) offline
// throughput (generated + prompt tokens per second) of a batch of requests.
// Usage: engine_bench MODEL [requests=256] [prompt_len=64] [max_tokens=64]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "engine/engine.h"

using namespace bitexact;
using namespace bitexact::engine;

namespace {

RequestSpec make(std::mt19937& g, int vocab, int prompt_len, int max_tokens, int id) {
  RequestSpec r;
  r.id = std::to_string(id);
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(3 + int32_t(g() % uint32_t(vocab - 3)));
  r.params.max_tokens = max_tokens;
  r.params.temperature = 0.8;
  r.params.seed = uint64_t(id);
  r.params.logprobs = 0;
  r.params.ignore_eos = true;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: engine_bench MODEL [requests] [prompt_len] [max_tokens]\n");
    return 2;
  }
  const int requests = argc > 2 ? std::atoi(argv[2]) : 256;
  const int prompt_len = argc > 3 ? std::atoi(argv[3]) : 64;
  const int max_tokens = argc > 4 ? std::atoi(argv[4]) : 64;
  auto model = model::Model::load(argv[1], {});
  const int vocab = int(model->config().vocab_size);
  std::mt19937 g(1);

  // (1) Overhead: N requests decoding together; only decode steps are counted (the prefill
  // step is excluded by diffing the stats after it).
  std::printf("scheduler overhead (decode steps, prompt 16, 32 tokens each):\n");
  std::printf("%8s %12s %12s %12s %12s %12s\n", "running", "step_us", "forward_us", "overhead_us", "schedule_us",
              "sample_us");
  for (int n : {1, 64, 256}) {
    EngineConfig c;
    c.max_num_seqs = n;
    c.num_kv_blocks = n * 4 + 8;
    Engine e(*model, nullptr, c);
    for (int i = 0; i < n; ++i) e.add_request(make(g, vocab, 16, 32, i));
    e.step();  // the prefill of all n
    const EngineStats a = e.stats();
    while (e.has_unfinished()) e.step();
    const EngineStats b = e.stats();
    const double steps = double(b.steps - a.steps);
    auto us = [&](double x, double y) { return (x - y) / steps * 1e6; };
    std::printf("%8d %12.1f %12.1f %12.1f %12.1f %12.1f\n", n, us(b.step_seconds, a.step_seconds),
                us(b.forward_seconds, a.forward_seconds),
                us(b.step_seconds - b.forward_seconds, a.step_seconds - a.forward_seconds),
                us(b.schedule_seconds, a.schedule_seconds), us(b.sample_seconds, a.sample_seconds));
  }

  // (2) Throughput: all requests submitted at once, default engine limits.
  EngineConfig c;
  Engine e(*model, nullptr, c);
  for (int i = 0; i < requests; ++i) e.add_request(make(g, vocab, prompt_len, max_tokens, i));
  const auto t0 = std::chrono::steady_clock::now();
  while (e.has_unfinished()) e.step();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const EngineStats s = e.stats();
  std::printf("throughput: %d requests x (prompt %d + %d generated): %.2f s, %.0f generated tok/s, "
              "%.0f total tok/s, %llu steps, forward %.0f%% of the time\n",
              requests, prompt_len, max_tokens, secs, double(s.generation_tokens) / secs,
              double(s.generation_tokens + s.prompt_tokens) / secs, (unsigned long long)s.steps,
              100.0 * s.forward_seconds / secs);
  return 0;
}
