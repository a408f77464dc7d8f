// Prometheus text exposition of the server's metrics (format 0.0.4): HELP/TYPE lines, gauges,
// counters with a _total suffix, and cumulative histogram buckets with a +Inf bucket.
#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace bitexact::server {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void head(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void line(std::string& out, const std::string& name, const std::string& labels, double v) {
  out += name + "{" + labels + "} " + num(v) + "\n";
}

// vLLM's bucket bounds (seconds) for the same histograms.
const std::vector<double> kTtftBounds = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                         0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                         7.5,   10.0,  20.0, 40.0, 80.0};
const std::vector<double> kItlBounds = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                        0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBounds = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,  2.5,   5.0,  10.0,
                                        15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0};

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  const size_t i =
      size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& labels, std::string& out) const {
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const std::string le = i < bounds_.size() ? num(bounds_[i]) : "+Inf";
    line(out, name + "_bucket", labels + ",le=\"" + le + "\"", double(cum));
  }
  line(out, name + "_sum", labels, sum_);
  line(out, name + "_count", labels, double(count_));
}

ServerMetrics::ServerMetrics(std::string model_name)
    : labels_("model_name=\"" + model_name + "\""),
      ttft_(kTtftBounds),
      itl_(kItlBounds),
      e2e_(kE2eBounds) {}

void ServerMetrics::observe_ttft(double s) {
  std::lock_guard lock(mu_);
  ttft_.observe(s);
}
void ServerMetrics::observe_itl(double s) {
  std::lock_guard lock(mu_);
  itl_.observe(s);
}
void ServerMetrics::observe_e2e(double s) {
  std::lock_guard lock(mu_);
  e2e_.observe(s);
}
void ServerMetrics::count_finished(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++finished_[reason];
}
void ServerMetrics::count_http(int status) {
  std::lock_guard lock(mu_);
  ++http_[status];
}

std::string ServerMetrics::render(const engine::EngineStats& s, int in_flight,
                                  const HttpPoolStats& http) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, double v) {
    head(out, std::string("bitexact:") + name, "gauge", help);
    line(out, std::string("bitexact:") + name, labels_, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    head(out, std::string("bitexact:") + name, "counter", help);
    line(out, std::string("bitexact:") + name, labels_, v);
  };
  gauge("num_requests_running", "Sequences in the running batch.", s.running);
  gauge("num_requests_waiting", "Sequences waiting to be scheduled.", s.waiting);
  gauge("num_requests_in_flight", "Engine requests accepted by the server and not finished.",
        in_flight);
  const double usage =
      s.kv_blocks_total ? double(s.kv_blocks_total - s.kv_blocks_free) / s.kv_blocks_total : 0.0;
  gauge("kv_cache_usage_perc", "Fraction of KV cache blocks in use (1 = full).", usage);
  gauge("kv_blocks_total", "KV cache blocks in all.", s.kv_blocks_total);
  gauge("kv_blocks_free", "KV cache blocks free (held by no sequence).", s.kv_blocks_free);
  counter("prompt_tokens_total", "Prompt tokens processed.", double(s.prompt_tokens));
  counter("generation_tokens_total", "Tokens generated.", double(s.generation_tokens));
  counter("num_preemptions_total", "Sequences preempted for lack of KV blocks.",
          double(s.preemptions));
  counter("prefix_cache_hits_total", "Prompt tokens served from the prefix cache.",
          double(s.prefix_cache_hits));
  counter("engine_steps_total", "Engine steps run.", double(s.steps));
  gauge("http_connections_active", "HTTP connections being served (this scrape's included).",
        double(http.active));
  gauge("http_connections_queued", "HTTP connections waiting for a thread (--max-connections).",
        double(http.queued));
  gauge("http_threads", "HTTP threads started, busy or idle.", double(http.threads));
  counter("http_connections_waited_total",
          "HTTP connections that waited for a thread because --max-connections were open.",
          double(http.waited));

  std::lock_guard lock(mu_);
  head(out, "bitexact:request_success_total", "counter", "Finished requests by finish reason.");
  for (const auto& [reason, n] : finished_)
    line(out, "bitexact:request_success_total", labels_ + ",finished_reason=\"" + reason + "\"",
         double(n));
  head(out, "bitexact:http_requests_total", "counter", "HTTP responses by status code.");
  for (const auto& [status, n] : http_)
    line(out, "bitexact:http_requests_total",
         labels_ + ",status=\"" + std::to_string(status) + "\"", double(n));
  head(out, "bitexact:time_to_first_token_seconds", "histogram",
       "Time from arrival to the first token.");
  ttft_.render("bitexact:time_to_first_token_seconds", labels_, out);
  head(out, "bitexact:inter_token_latency_seconds", "histogram",
       "Time between consecutive outputs of a request.");
  itl_.render("bitexact:inter_token_latency_seconds", labels_, out);
  head(out, "bitexact:e2e_request_latency_seconds", "histogram",
       "Time from arrival to the last token.");
  e2e_.render("bitexact:e2e_request_latency_seconds", labels_, out);
  return out;
}

}  // namespace bitexact::server
