// Server metrics in the Prometheus text format (/metrics): request gauges and KV usage from the
// engine's stats, token counters, and latency histograms (TTFT, inter-token, end-to-end) recorded
// by the engine thread as it delivers outputs. Names follow vLLM's, under the `bitexact:` prefix.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace bitexact::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends `name_bucket{le=...}`, `name_sum` and `name_count` lines with `labels` (`k="v"`).
  void render(const std::string& name, const std::string& labels, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // [bounds_.size() + 1]: the last is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// The HTTP connection pool's state (ConnectionPool), sampled when /metrics is read.
struct HttpPoolStats {
  size_t active = 0;    // connections being served
  size_t queued = 0;    // accepted connections waiting for a thread (at --max-connections)
  size_t threads = 0;   // threads started, busy or idle
  uint64_t waited = 0;  // connections that found every thread busy at --max-connections
};

class ServerMetrics {
 public:
  explicit ServerMetrics(std::string model_name);

  void observe_ttft(double seconds);
  void observe_itl(double seconds);
  void observe_e2e(double seconds);
  void count_finished(const std::string& finish_reason);
  void count_http(int status);

  // The whole exposition; `in_flight`: engine requests accepted and unfinished.
  std::string render(const engine::EngineStats& stats, int in_flight,
                     const HttpPoolStats& http) const;

 private:
  const std::string labels_;  // model_name="..."
  mutable std::mutex mu_;
  Histogram ttft_, itl_, e2e_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  std::map<int, uint64_t> http_;              // by status
};

}  // namespace bitexact::server
