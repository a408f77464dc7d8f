// ConnectionPool: a thread is started when a connection arrives and no thread is idle (below the
// limit); a thread with no work for idle_timeout ends, above min_threads. Ended threads are
// joined by the next enqueue() or by shutdown(), never by themselves.
#include "server/connection_pool.h"

#include <cstdio>
#include <iterator>

namespace bitexact::server {

ConnectionPool::ConnectionPool(size_t max_threads, size_t min_threads,
                               std::chrono::milliseconds idle_timeout)
    : max_threads_(std::max<size_t>(1, max_threads)),
      min_threads_(std::min(min_threads, std::max<size_t>(1, max_threads))),
      idle_timeout_(idle_timeout) {}

ConnectionPool::~ConnectionPool() { shutdown(); }

size_t ConnectionPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void ConnectionPool::enqueue(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  reap();
  queue_.push_back(std::move(fn));
  // Idle threads already woken for earlier connections are counted in idle_ until they take one,
  // so a new thread starts exactly when the queue outgrows the idle ones.
  if (queue_.size() > idle_ && threads_ < max_threads_) {
    pool_.emplace_back();
    auto self = std::prev(pool_.end());
    *self = std::thread([this, self] { work(self); });  // runs work() only once mu_ is released
    ++threads_;
  } else {
    if (queue_.size() > idle_) ++waited_;  // at the limit: it waits for a connection to end
    cv_.notify_one();
  }
}

void ConnectionPool::work(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_;
    const bool woken =
        cv_.wait_for(lock, idle_timeout_, [&] { return !queue_.empty() || shutdown_; });
    --idle_;
    if (!queue_.empty()) {
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      lock.unlock();
      try {
        fn();  // serves one connection until it closes
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bitexact serve: connection task failed: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "bitexact serve: connection task failed\n");
      }
      lock.lock();
      --busy_;
      continue;
    }
    if (shutdown_) break;
    if (!woken && threads_ > min_threads_) break;  // idle for idle_timeout_: retire
  }
  --threads_;
  retired_.push_back(self);
}

void ConnectionPool::reap() {
  for (auto it : retired_) {
    it->join();  // it pushed itself here as its last act under mu_, so this returns at once
    pool_.erase(it);
  }
  retired_.clear();
}

void ConnectionPool::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
  }
  cv_.notify_all();
  // No enqueue() after shutdown (httplib stops accepting first), so pool_ only shrinks in reap(),
  // which nobody calls any more: it is safe to walk unlocked.
  for (std::thread& t : pool_)
    if (t.joinable()) t.join();
  std::lock_guard lock(mu_);
  pool_.clear();
  retired_.clear();
}

}  // namespace bitexact::server
