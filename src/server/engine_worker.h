// The one thread that owns the Engine. HTTP threads submit requests and aborts through a task
// queue; the engine thread adds them between steps, loops step() while work remains (sleeping on a
// condition variable when idle), and delivers each request's outputs to the RequestChannel that
// the submitting HTTP handler reads. Engine calls therefore never run concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"
#include "server/metrics.h"

namespace bitexact::server {

// The outputs of one HTTP request's engine requests (one per prompt), in arrival order.
class RequestChannel {
 public:
  explicit RequestChannel(int num_requests) : remaining_(num_requests) {}

  enum class State { kPending, kAccepted, kFailed };
  // Blocks until the engine thread has added (or refused) the requests; returns that outcome
  // (kAccepted even if the requests failed later: failed() tells that).
  State wait_admitted();
  bool failed() const;       // refused, or failed after being accepted (engine error, shutdown)
  // Moves queued outputs into `out`; waits up to `timeout` for one. False when nothing came.
  bool pop(std::vector<engine::RequestOutput>& out, std::chrono::milliseconds timeout);
  bool finished() const;     // every request finished, or the channel failed
  int error_status() const;  // when State::kFailed: the HTTP status to answer
  std::string error_message() const;

  // Engine-thread side.
  void accept();
  void fail(int status, const std::string& message);
  void push(engine::RequestOutput out);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kPending;
  bool accepted_ = false;  // accept() ran: a later fail() is not a refusal
  int remaining_;
  int error_status_ = 0;
  std::string error_message_;
  std::deque<engine::RequestOutput> queue_;
};

class EngineWorker {
 public:
  // `max_pending`: unfinished engine requests accepted at most; past it submit() answers 503.
  EngineWorker(engine::Engine& engine, ServerMetrics& metrics, int max_pending);
  ~EngineWorker();

  // Queues the requests (all or none are added). Throws ApiError(503) when the server is full or
  // shutting down. The specs' ids must be unique: use next_id().
  std::shared_ptr<RequestChannel> submit(std::vector<engine::RequestSpec> specs);
  // Drops requests wherever they are (a client went away); their KV blocks are freed.
  void abort(const std::vector<std::string>& ids);
  std::string next_id(const std::string& prefix);
  // Runs `f` on the engine thread between steps (weight updates); `f` catches its own exceptions.
  void call(std::function<void(engine::Engine&)> f);

  // Refuse new requests from now on (graceful shutdown). Existing ones continue.
  void start_draining() { draining_ = true; }
  bool draining() const { return draining_; }
  // Waits until no request is in flight or the timeout passes; true when idle.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Aborts everything still running, then stops and joins the engine thread.
  void stop();

  int in_flight() const { return in_flight_; }
  // Set when an engine step threw: the engine's state (and a device context after a kernel
  // fault) cannot be trusted, so /health reports 503 and new requests are refused until the
  // server is restarted, instead of failing one by one.
  std::optional<std::string> failure() const;
  engine::EngineStats stats() const;  // as of the last step

 private:
  struct Task {
    enum Kind { kAdd, kAbort, kStop, kCall } kind;
    std::vector<engine::RequestSpec> specs;   // kAdd
    std::shared_ptr<RequestChannel> channel;  // kAdd
    std::vector<std::string> ids;             // kAbort
    std::chrono::steady_clock::time_point arrival;
    std::function<void(engine::Engine&)> call = nullptr;  // kCall
  };
  struct Active {  // an engine request the engine thread tracks
    std::shared_ptr<RequestChannel> channel;
    std::chrono::steady_clock::time_point arrival, last_token;
    bool has_token = false;
  };

  void post(Task task);
  void run();
  void add(Task& task);
  void drop(const std::string& id, bool call_engine);
  void deliver(std::vector<engine::RequestOutput>& outs);
  void fail_all(const std::string& message);

  engine::Engine& engine_;
  ServerMetrics& metrics_;
  const int max_pending_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> failed_{false};
  std::string failure_;  // written once, before failed_ is set
  std::atomic<uint64_t> id_counter_{0};

  std::mutex stop_mu_;  // stop() may be called by the signal thread and the main thread at once
  std::mutex mu_;       // guards tasks_ and idle waiting
  std::condition_variable cv_, idle_cv_;
  std::deque<Task> tasks_;
  mutable std::mutex stats_mu_;
  engine::EngineStats stats_;

  std::unordered_map<std::string, Active> active_;  // engine thread only
  std::thread thread_;
};

}  // namespace bitexact::server
