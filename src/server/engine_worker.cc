// The engine thread: a task queue drained between steps, step() while work remains, and delivery
// of outputs to per-request channels. Failures are contained: a request the engine refuses fails
// only its own channel, and an exception from step() fails the requests in flight, not the server.
#include "server/engine_worker.h"

#include <cstdio>

#include "core/error.h"
#include "server/api_error.h"

namespace bitexact::server {

using Clock = std::chrono::steady_clock;

// ---- RequestChannel -----------------------------------------------------------------------------

RequestChannel::State RequestChannel::wait_admitted() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_ != State::kPending; });
  return accepted_ ? State::kAccepted : state_;
}

bool RequestChannel::failed() const {
  std::lock_guard lock(mu_);
  return state_ == State::kFailed;
}

bool RequestChannel::pop(std::vector<engine::RequestOutput>& out,
                         std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout,
               [&] { return !queue_.empty() || remaining_ == 0 || state_ == State::kFailed; });
  if (queue_.empty()) return false;
  while (!queue_.empty()) {
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return true;
}

bool RequestChannel::finished() const {
  std::lock_guard lock(mu_);
  return queue_.empty() && (remaining_ == 0 || state_ == State::kFailed);
}

int RequestChannel::error_status() const {
  std::lock_guard lock(mu_);
  return error_status_;
}
std::string RequestChannel::error_message() const {
  std::lock_guard lock(mu_);
  return error_message_;
}

void RequestChannel::accept() {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::kPending) state_ = State::kAccepted, accepted_ = true;
  }
  cv_.notify_all();
}

void RequestChannel::fail(int status, const std::string& message) {
  {
    std::lock_guard lock(mu_);
    state_ = State::kFailed;
    error_status_ = status;
    error_message_ = message;
  }
  cv_.notify_all();
}

void RequestChannel::push(engine::RequestOutput out) {
  {
    std::lock_guard lock(mu_);
    if (out.finished) --remaining_;
    queue_.push_back(std::move(out));
  }
  cv_.notify_all();
}

// ---- EngineWorker -------------------------------------------------------------------------------

EngineWorker::EngineWorker(engine::Engine& engine, ServerMetrics& metrics, int max_pending)
    : engine_(engine), metrics_(metrics), max_pending_(max_pending) {
  stats_ = engine_.stats();
  thread_ = std::thread([this] { run(); });
}

EngineWorker::~EngineWorker() { stop(); }

std::string EngineWorker::next_id(const std::string& prefix) {
  return prefix + "-" + std::to_string(++id_counter_);
}

std::shared_ptr<RequestChannel> EngineWorker::submit(std::vector<engine::RequestSpec> specs) {
  if (draining_) throw ApiError(503, "The server is shutting down.");
  if (failed_) throw ApiError(503, "The engine failed (" + failure_ + "); restart the server.");
  const int n = int(specs.size());
  if (in_flight_.fetch_add(n) + n > max_pending_) {
    in_flight_ -= n;
    throw ApiError(503, "The server is at capacity (" + std::to_string(max_pending_) +
                            " requests in flight); retry later.");
  }
  auto channel = std::make_shared<RequestChannel>(n);
  post(Task{Task::kAdd, std::move(specs), channel, {}, Clock::now()});
  return channel;
}

void EngineWorker::abort(const std::vector<std::string>& ids) {
  if (!ids.empty()) post(Task{Task::kAbort, {}, nullptr, ids, Clock::now()});
}

void EngineWorker::call(std::function<void(engine::Engine&)> f) {
  Task t{Task::kCall, {}, nullptr, {}, Clock::now()};
  t.call = std::move(f);
  post(std::move(t));
}

void EngineWorker::post(Task task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

bool EngineWorker::wait_idle(std::chrono::milliseconds timeout) {
  // Polled in short waits: in_flight_ changes outside mu_, so a notify may come before the wait.
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (in_flight_ != 0 && Clock::now() < deadline)
    idle_cv_.wait_for(lock, std::chrono::milliseconds(50));
  return in_flight_ == 0;
}

void EngineWorker::stop() {
  std::lock_guard lock(stop_mu_);
  if (!thread_.joinable()) return;
  draining_ = true;
  post(Task{Task::kStop, {}, nullptr, {}, Clock::now()});
  thread_.join();
}

engine::EngineStats EngineWorker::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void EngineWorker::run() {
  for (;;) {
    std::deque<Task> tasks;
    {
      std::unique_lock lock(mu_);
      // Sleep only when the engine has nothing left to do; new tasks wake us.
      if (active_.empty()) cv_.wait(lock, [&] { return !tasks_.empty(); });
      tasks.swap(tasks_);
    }
    bool stopping = false;
    for (Task& t : tasks) {
      if (t.kind == Task::kAdd)
        add(t);
      else if (t.kind == Task::kAbort)
        for (const std::string& id : t.ids) drop(id, true);
      else if (t.kind == Task::kCall)
        t.call(engine_);
      else
        stopping = true;
    }
    if (stopping) {
      fail_all("The server is shutting down; the request was aborted.");
      return;
    }
    if (!active_.empty()) {
      try {
        std::vector<engine::RequestOutput> outs = engine_.step();
        deliver(outs);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bitexact serve: engine step failed: %s\n", e.what());
        if (!failed_) {
          failure_ = e.what();
          failed_ = true;
        }
        fail_all(std::string("internal error in the engine: ") + e.what());
      }
    }
    {
      std::lock_guard lock(stats_mu_);
      stats_ = engine_.stats();
    }
    if (in_flight_ == 0) idle_cv_.notify_all();
  }
}

void EngineWorker::add(Task& task) {
  std::vector<std::string> added;
  try {
    for (engine::RequestSpec& spec : task.specs) {
      const std::string id = spec.id;
      engine_.add_request(std::move(spec));
      added.push_back(id);
      active_[id] = Active{task.channel, task.arrival, task.arrival, false};
    }
    task.channel->accept();
  } catch (const std::exception& e) {
    // All or nothing: the requests of this task that got in leave again.
    for (const std::string& id : added) drop(id, true);
    in_flight_ -= int(task.specs.size() - added.size());
    const Error* err = dynamic_cast<const Error*>(&e);
    const int status = !err                                         ? 500
                       : err->kind() == ErrorKind::kInvalidArgument ? 400
                       : err->kind() == ErrorKind::kOutOfResources  ? 503
                                                                    : 500;
    task.channel->fail(status, e.what());
  }
}

void EngineWorker::drop(const std::string& id, bool call_engine) {
  auto it = active_.find(id);
  if (it == active_.end()) return;  // finished already
  if (call_engine) {
    try {
      engine_.abort(id);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bitexact serve: abort(%s) failed: %s\n", id.c_str(), e.what());
    }
  }
  metrics_.count_finished("abort");
  active_.erase(it);
  --in_flight_;
}

void EngineWorker::fail_all(const std::string& message) {
  std::vector<std::string> ids;
  for (auto& [id, a] : active_) {
    a.channel->fail(500, message);
    ids.push_back(id);
  }
  for (const std::string& id : ids) drop(id, true);
}

void EngineWorker::deliver(std::vector<engine::RequestOutput>& outs) {
  const auto now = Clock::now();
  auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  for (engine::RequestOutput& out : outs) {
    auto it = active_.find(out.id);
    if (it == active_.end()) continue;  // aborted while the step ran
    Active& a = it->second;
    bool any_token = false;
    for (const auto& s : out.samples) any_token |= !s.token_ids.empty();
    if (any_token) {
      if (!a.has_token)
        metrics_.observe_ttft(secs(now - a.arrival));
      else
        metrics_.observe_itl(secs(now - a.last_token));
      a.has_token = true;
      a.last_token = now;
    }
    const bool finished = out.finished;
    for (const auto& s : out.samples)
      if (s.finished) metrics_.count_finished(s.finish_reason);
    if (finished) metrics_.observe_e2e(secs(now - a.arrival));
    a.channel->push(std::move(out));
    if (finished) {
      active_.erase(it);
      --in_flight_;
    }
  }
}

std::optional<std::string> EngineWorker::failure() const {
  if (!failed_) return std::nullopt;
  return failure_;
}

}  // namespace bitexact::server
