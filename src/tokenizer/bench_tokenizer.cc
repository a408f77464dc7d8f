// bench_tokenizer: single-thread encode throughput of one tokenizer over a JSONL corpus (one JSON
// string per line, or objects with a "text" field). Prints one JSON line with MB/s and tokens/s.
// Usage: bench_tokenizer MODEL_PATH CORPUS.jsonl [repeats]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: bench_tokenizer MODEL_PATH CORPUS.jsonl [repeats]\n";
    return 2;
  }
  try {
    auto tok = bitexact::tok::load_tokenizer(argv[1]);
    std::vector<std::string> texts;
    std::ifstream f(argv[2]);
    std::string line;
    size_t bytes = 0;
    while (std::getline(f, line)) {
      auto j = nlohmann::json::parse(line);
      texts.push_back(j.is_string() ? j.get<std::string>() : j.at("text").get<std::string>());
      bytes += texts.back().size();
    }
    int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < repeats; ++r) {
      tokens = 0;
      auto t0 = std::chrono::steady_clock::now();
      for (const auto& s : texts) tokens += tok->encode(s, false).size();
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, dt);
    }
    std::printf("{\"impl\": \"bitexact\", \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
                "\"mb_per_s\": %.2f, \"tokens_per_s\": %.0f}\n",
                bytes, tokens, best, bytes / best / 1e6, tokens / best);
  } catch (const bitexact::Error& e) {
    std::cerr << "bench_tokenizer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
