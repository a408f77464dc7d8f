// sampler_bench: host Sampler::sample time per row at a real vocabulary size (Qwen3: 151936),
// for the temperature rows that the engine sends to the host (docs/notes/engine.md). Logits are
// random normal (sd 3) rows, as a dummy model gives; the row's log-softmax is passed in, as the
// engine does, so only the draw and the logprob lookups are timed.
// Usage: sampler_bench [V=151936] [rows=200]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "engine/sampler.h"

using namespace bitexact::engine;

int main(int argc, char** argv) {
  const int64_t V = argc > 1 ? std::atoll(argv[1]) : 151936;
  const int rows = argc > 2 ? std::atoi(argv[2]) : 200;
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(size_t(V) * 4), lp(logits.size());
  for (float& x : logits) x = nd(g);
  for (int r = 0; r < 4; ++r) {  // a log-softmax for the logprob lookups (its values are not timed)
    const float* x = logits.data() + size_t(r) * size_t(V);
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(x[i]));
    for (int64_t i = 0; i < V; ++i) s += std::exp(double(x[i]) - mx);
    for (int64_t i = 0; i < V; ++i) lp[size_t(r) * size_t(V) + size_t(i)] = float(double(x[i]) - mx - std::log(s));
  }
  struct Case {
    const char* name;
    double temperature;
    int top_k;
    double top_p;
    int logprobs;
  };
  const Case cases[] = {{"greedy", 0.0, 0, 1.0, 0},       {"T=1.0", 1.0, 0, 1.0, 0},
                        {"T=0.7", 0.7, 0, 1.0, 0},        {"T=1.0 top_k=20", 1.0, 20, 1.0, 0},
                        {"T=1.0 top_p=0.95", 1.0, 0, 0.95, 0}, {"T=1.0 logprobs=5", 1.0, 0, 1.0, 5}};
  Sampler s;
  std::printf("V=%lld rows=%d\n", (long long)V, rows);
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.logprobs = c.logprobs;
    uint64_t sink = 0;
    for (int r = 0; r < 4; ++r)  // warm up the sampler's buffers
      sink += uint64_t(s.sample({logits.data() + size_t(r) * size_t(V), size_t(V)}, p, 1, uint64_t(r), {},
                                lp.data() + size_t(r) * size_t(V)).token);
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < rows; ++r) {
      const size_t off = size_t(r % 4) * size_t(V);
      sink += uint64_t(s.sample({logits.data() + off, size_t(V)}, p, 42, uint64_t(r), {}, lp.data() + off).token);
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-20s %8.3f ms/row   (checksum %llu)\n", c.name, ms / rows, (unsigned long long)sink);
  }
  return 0;
}
