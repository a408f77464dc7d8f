// `bitexact bench serve`: the equivalent of `vllm bench serve` against a running OpenAI-compatible
// server. A seeded random dataset of token-id prompts is sent as streaming completions (Poisson
// arrivals, optional concurrency cap); TTFT, TPOT, ITL, end-to-end latency and throughputs are
// reported as vLLM reports them, on stdout and optionally as JSON (--result-file).
// `bitexact bench kernels` (CUDA builds) runs the kernel benchmarks of src/ops/cuda/bench.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "core/error.h"
#ifdef BITEXACT_WITH_CUDA
#include "ops/cuda/bench/bench_entry.h"
#endif

namespace bitexact::apps {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string base_url = "http://127.0.0.1:8000", model, api_key, result_file,
              endpoint = "/v1/completions";
  int num_prompts = 100, input_len = 1024, output_len = 128, max_concurrency = 0;
  double range_ratio = 0.0, request_rate = std::numeric_limits<double>::infinity();
  double temperature = 0.0;  // greedy, as `vllm bench serve` sends by default
  // Sent only when given (else the server's defaults apply, e.g. a model's generation_config).
  std::optional<int> top_k;
  std::optional<double> top_p;
  uint64_t seed = 0;
  int64_t vocab_size = 0;
};

struct Sample {
  std::vector<int32_t> prompt;
  int output_len = 0;
};

struct Result {
  bool ok = false;
  std::string error;
  int prompt_len = 0, output_tokens = 0;
  double ttft = 0, latency = 0;
  std::vector<double> itl;          // gaps between token-carrying chunks (s)
  std::vector<double> token_times;  // seconds since the benchmark start, one per chunk
};

// Lengths uniform in [L(1-r), L(1+r)] and token ids uniform over the vocabulary, as vLLM's random
// dataset, from one seed so that runs compare.
std::vector<Sample> random_dataset(const BenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto len = [&](int l) {
    const int lo = std::max(1, int(std::floor(l * (1.0 - o.range_ratio))));
    const int hi = std::max(lo, int(std::ceil(l * (1.0 + o.range_ratio))));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::uniform_int_distribution<int32_t> tok(0, int32_t(o.vocab_size - 1));
  std::vector<Sample> out(size_t(o.num_prompts));
  for (Sample& s : out) {
    s.prompt.resize(size_t(len(o.input_len)));
    for (int32_t& t : s.prompt) t = tok(rng);
    s.output_len = len(o.output_len);
  }
  return out;
}

httplib::Headers auth_headers(const BenchOptions& o) {
  httplib::Headers h;
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  return h;
}

// The served model's name and vocabulary size (from /v1/models) unless given.
void discover(BenchOptions& o) {
  httplib::Client cli(o.base_url);
  cli.set_connection_timeout(5);
  auto r = cli.Get("/v1/models", auth_headers(o));
  if (!r || r->status != 200)
    fail(ErrorKind::kIo,
         "cannot read " + o.base_url + "/v1/models" +
             (r ? " (HTTP " + std::to_string(r->status) + ")" : " (no connection)"));
  const json models = json::parse(r->body, nullptr, false);
  if (models.is_discarded() || !models.contains("data") || models["data"].empty())
    fail(ErrorKind::kFormat, "/v1/models: unexpected answer");
  if (o.model.empty()) o.model = models["data"][0].value("id", "");
  if (o.vocab_size <= 0) o.vocab_size = models["data"][0].value("vocab_size", int64_t(0));
  if (o.vocab_size <= 0)
    fail(ErrorKind::kInvalidArgument, "the server reports no vocab_size; give --vocab-size");
}

// One streaming request; every chunk that carries a choice counts as one token (the server sends
// one chunk per engine step), the total comes from the usage chunk.
Result run_one(const BenchOptions& o, const Sample& s, Clock::time_point bench_start) {
  Result res;
  res.prompt_len = int(s.prompt.size());
  json body = {{"model", o.model},
               {"prompt", s.prompt},
               {"max_tokens", s.output_len},
               {"temperature", o.temperature},
               {"ignore_eos", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (o.top_k) body["top_k"] = *o.top_k;
  if (o.top_p) body["top_p"] = *o.top_p;
  httplib::Client cli(o.base_url);
  cli.set_read_timeout(600);
  httplib::Request req;
  req.method = "POST";
  req.path = o.endpoint;
  req.headers = auth_headers(o);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  const auto start = Clock::now();
  auto last = start;
  std::string buf;
  int chunks = 0;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    for (size_t end; (end = buf.find("\n\n")) != std::string::npos; buf.erase(0, end + 2)) {
      const std::string event = buf.substr(0, end);
      if (event.rfind("data: ", 0) != 0 || event == "data: [DONE]") continue;
      const json j = json::parse(event.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) res.error = j["error"].value("message", "error in stream");
      if (j.contains("usage") && j["usage"].is_object())
        res.output_tokens = j["usage"].value("completion_tokens", 0);
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const auto now = Clock::now();
      if (chunks++ == 0)
        res.ttft = std::chrono::duration<double>(now - start).count();
      else
        res.itl.push_back(std::chrono::duration<double>(now - last).count());
      res.token_times.push_back(std::chrono::duration<double>(now - bench_start).count());
      last = now;
    }
    return true;
  };
  httplib::Response resp;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, resp, err);
  res.latency = std::chrono::duration<double>(Clock::now() - start).count();
  if (!sent)
    res.error = "connection: " + httplib::to_string(err);
  else if (resp.status != 200)
    res.error = "HTTP " + std::to_string(resp.status) + ": " + resp.body.substr(0, 200);
  else if (res.error.empty() && chunks == 0)
    res.error = "no tokens streamed";
  res.ok = res.error.empty();
  return res;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  // Linear interpolation between closest ranks, as numpy.percentile does.
  const double idx = p / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(idx)), hi = size_t(std::ceil(idx));
  return v[lo] + (v[hi] - v[lo]) * (idx - double(lo));
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

void progress(int done, int total) {
  const int width = 40, filled = total ? done * width / total : width;
  std::fprintf(stderr, "\r[%s%s] %d/%d", std::string(size_t(filled), '=').c_str(),
               std::string(size_t(width - filled), ' ').c_str(), done, total);
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

json summarize(const BenchOptions& o, const std::vector<Result>& results, double duration) {
  int ok = 0, failed = 0;
  int64_t in_tokens = 0, out_tokens = 0;
  std::vector<double> ttft, tpot, itl, e2e, times;
  std::vector<std::string> errors;
  for (const Result& r : results) {
    if (!r.ok) {
      ++failed;
      if (errors.size() < 5) errors.push_back(r.error);
      continue;
    }
    ++ok;
    in_tokens += r.prompt_len;
    out_tokens += r.output_tokens;
    ttft.push_back(r.ttft * 1e3);
    e2e.push_back(r.latency * 1e3);
    if (r.output_tokens > 1) tpot.push_back((r.latency - r.ttft) * 1e3 / (r.output_tokens - 1));
    for (double x : r.itl) itl.push_back(x * 1e3);
    times.insert(times.end(), r.token_times.begin(), r.token_times.end());
  }
  // Peak output throughput: the most tokens that arrived within any one-second window [t, t+1).
  std::map<int64_t, int> per_second;
  for (double t : times) ++per_second[int64_t(std::floor(t))];
  int peak = 0;
  for (const auto& [sec, n] : per_second) peak = std::max(peak, n);
  json j = {{"backend", "bitexact"},
            {"base_url", o.base_url},
            {"model_id", o.model},
            {"num_prompts", o.num_prompts},
            {"request_rate", std::isinf(o.request_rate) ? json("inf") : json(o.request_rate)},
            {"max_concurrency", o.max_concurrency ? json(o.max_concurrency) : json(nullptr)},
            {"random_input_len", o.input_len},
            {"random_output_len", o.output_len},
            {"random_range_ratio", o.range_ratio},
            {"seed", o.seed},
            {"duration", duration},
            {"completed", ok},
            {"failed", failed},
            {"errors", errors},
            {"total_input_tokens", in_tokens},
            {"total_output_tokens", out_tokens},
            {"request_throughput", ok / duration},
            {"output_throughput", double(out_tokens) / duration},
            {"total_token_throughput", double(in_tokens + out_tokens) / duration},
            {"max_output_tokens_per_s", double(peak)}};
  auto stats = [&](const char* name, const std::vector<double>& v) {
    j[std::string("mean_") + name + "_ms"] = mean(v);
    j[std::string("median_") + name + "_ms"] = percentile(v, 50);
    j[std::string("p99_") + name + "_ms"] = percentile(v, 99);
  };
  stats("ttft", ttft);
  stats("tpot", tpot);
  stats("itl", itl);
  stats("e2el", e2e);
  return j;
}

void print_report(const json& j) {
  auto row = [](const char* label, const std::string& v) {
    std::printf("%-40s %s\n", label, v.c_str());
  };
  auto f2 = [](double x) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2f", x);
    return std::string(b);
  };
  std::printf("============ Serving Benchmark Result ============\n");
  row("Successful requests:", std::to_string(j["completed"].get<int>()));
  row("Failed requests:", std::to_string(j["failed"].get<int>()));
  row("Benchmark duration (s):", f2(j["duration"]));
  row("Total input tokens:", std::to_string(j["total_input_tokens"].get<int64_t>()));
  row("Total generated tokens:", std::to_string(j["total_output_tokens"].get<int64_t>()));
  row("Request throughput (req/s):", f2(j["request_throughput"]));
  row("Output token throughput (tok/s):", f2(j["output_throughput"]));
  row("Peak output token throughput (tok/s):", f2(j["max_output_tokens_per_s"]));
  row("Total Token throughput (tok/s):", f2(j["total_token_throughput"]));
  const char* sections[][3] = {{"Time to First Token", "ttft", "TTFT"},
                               {"Time per Output Token (excl. 1st token)", "tpot", "TPOT"},
                               {"Inter-token Latency", "itl", "ITL"},
                               {"End-to-end Latency", "e2el", "E2EL"}};
  for (const auto& s : sections) {
    std::string title = std::string(" ") + s[0] + " ";
    const size_t pad = title.size() < 50 ? (50 - title.size()) / 2 : 0;
    std::printf("%s%s%s\n", std::string(pad, '-').c_str(), title.c_str(),
                std::string(50 - pad - title.size(), '-').c_str());
    for (const char* stat : {"mean", "median", "p99"}) {
      const std::string key = std::string(stat) + "_" + s[1] + "_ms";
      std::string label = std::string(stat == std::string("mean")     ? "Mean"
                                      : stat == std::string("median") ? "Median"
                                                                      : "P99") +
                          " " + s[2] + " (ms):";
      row(label.c_str(), f2(j[key]));
    }
  }
  std::printf("==================================================\n");
}

int bench_serve(int argc, char** argv) {
  CLI::App app{"Benchmark a running OpenAI-compatible server (as `vllm bench serve`).",
               "bitexact bench serve"};
  BenchOptions o;
  if (const char* key = std::getenv("BITEXACT_API_KEY")) o.api_key = key;
  std::string rate = "inf";
  app.add_option("--base-url", o.base_url, "server base URL")->capture_default_str();
  app.add_option("--endpoint", o.endpoint)->capture_default_str();
  app.add_option("--model", o.model, "model name to send (default: the server's first)");
  app.add_option("--api-key", o.api_key, "API key (env BITEXACT_API_KEY)");
  app.add_option("--num-prompts", o.num_prompts)->capture_default_str();
  app.add_option("--random-input-len", o.input_len)->capture_default_str();
  app.add_option("--random-output-len", o.output_len)->capture_default_str();
  app.add_option("--random-range-ratio", o.range_ratio, "lengths uniform in [L(1-r), L(1+r)]")
      ->capture_default_str();
  app.add_option("--request-rate", rate, "requests per second, Poisson arrivals (inf: all at once)")
      ->capture_default_str();
  app.add_option("--max-concurrency", o.max_concurrency, "requests in flight at most (0: no cap)");
  app.add_option("--seed", o.seed, "dataset and arrival seed")->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature sent with each request")
      ->capture_default_str();
  int top_k = -1;
  double top_p = 1.0;
  auto* top_k_opt =
      app.add_option("--top-k", top_k, "top_k sent with each request (default: not sent)");
  auto* top_p_opt =
      app.add_option("--top-p", top_p, "top_p sent with each request (default: not sent)");
  app.add_option("--vocab-size", o.vocab_size,
                 "token ids are drawn below this (default: from /v1/models)");
  app.add_option("--result-file", o.result_file, "write the results as JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (top_k_opt->count()) o.top_k = top_k;
  if (top_p_opt->count()) o.top_p = top_p;
  o.request_rate = rate == "inf" ? std::numeric_limits<double>::infinity() : std::stod(rate);
  if (!(o.request_rate > 0))
    fail(ErrorKind::kInvalidArgument, "--request-rate must be positive or inf");
  if (o.num_prompts < 1 || o.input_len < 1 || o.output_len < 1 || o.range_ratio < 0 ||
      o.range_ratio >= 1)
    fail(ErrorKind::kInvalidArgument,
         "need --num-prompts, lengths >= 1 and 0 <= --random-range-ratio < 1");
  discover(o);
  const std::vector<Sample> data = random_dataset(o);

  std::vector<Result> results(data.size());
  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable cv;
  int running = 0, done = 0;
  std::mt19937_64 arrivals(o.seed ^ 0x9e3779b97f4a7c15ull);
  std::exponential_distribution<double> gap(std::isinf(o.request_rate) ? 1.0 : o.request_rate);
  std::fprintf(stderr, "bench serve: %d prompts against %s (model %s)\n", o.num_prompts,
               o.base_url.c_str(), o.model.c_str());
  progress(0, o.num_prompts);
  const auto start = Clock::now();
  auto next = start;
  for (size_t i = 0; i < data.size(); ++i) {
    if (!std::isinf(o.request_rate)) {
      next +=
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(arrivals)));
      std::this_thread::sleep_until(next);
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return o.max_concurrency <= 0 || running < o.max_concurrency; });
      ++running;
    }
    threads.emplace_back([&, i] {
      results[i] = run_one(o, data[i], start);
      std::lock_guard lock(mu);
      --running;
      progress(++done, o.num_prompts);
      cv.notify_all();
    });
  }
  for (std::thread& t : threads) t.join();
  const double duration = std::chrono::duration<double>(Clock::now() - start).count();

  const json summary = summarize(o, results, duration);
  print_report(summary);
  for (const auto& e : summary["errors"])
    std::fprintf(stderr, "bench serve: failed request: %s\n", e.get<std::string>().c_str());
  if (!o.result_file.empty()) {
    std::ofstream f(o.result_file);
    if (!f) fail(ErrorKind::kIo, "cannot write " + o.result_file);
    f << summary.dump(2) << "\n";
  }
  return summary["failed"].get<int>() == 0 ? 0 : 1;
}

}  // namespace

// `bitexact bench <what>`: only `serve` is here; kernel benchmarks are separate programs.
namespace {

// `bitexact bench kernels [gemm|attention] [args]`: the GEMM benchmark against cuBLASLt (every
// Qwen3 layer shape x M = 1..4096, ceilings measured in the same run) and the attention benchmark
// (decode b1/8/64 x 1k/4k/16k against the KV floor, prefill 1k/4k/16k); with no kind, both with
// their defaults. The arguments are those of the stand-alone bench_gemm / bench_attention.
int bench_kernels(int argc, char** argv) {
#ifdef BITEXACT_WITH_CUDA
  const std::string kind = argc >= 2 ? argv[1] : "";
  std::vector<std::string> args = {"bench"};
  for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
  auto call = [&](int (*entry)(int, char**), std::vector<std::string> a) {
    std::vector<char*> v;
    for (std::string& x : a) v.push_back(x.data());
    v.push_back(nullptr);
    return entry(int(a.size()), v.data());
  };
  if (kind == "gemm") return call(bench_gemm_main, args);
  if (kind == "attention") return call(bench_attention_main, args);
  if (!kind.empty()) {
    std::fprintf(stderr, "usage: bitexact bench kernels [gemm|attention] [args]\n");
    return 2;
  }
  const int rc = call(bench_gemm_main, {"bench", "bench_kernels_gemm"});
  return call(bench_attention_main, {"bench"}) | rc;
#else
  (void)argc;
  (void)argv;
  fail(ErrorKind::kUnsupported, "bench kernels needs the CUDA backend (configure with -DBITEXACT_CUDA=ON)");
#endif
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "serve") return bench_serve(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "kernels") return bench_kernels(argc - 1, argv + 1);
  std::fprintf(stderr,
               "usage: bitexact bench serve [options]   (`bitexact bench serve --help`)\n"
               "       bitexact bench kernels [gemm|attention] [args]   (CUDA builds)\n");
  return 2;
}

}  // namespace bitexact::apps
