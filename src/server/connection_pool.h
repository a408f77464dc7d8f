// The task queue behind cpp-httplib's accept loop: one thread per open connection, started on
// demand up to a limit and retired after idling. httplib serves a connection on one thread for its
// whole life (a stream, keep-alive waits), so a fixed pool smaller than the number of streaming
// clients would leave the rest unserved until some stream ends; this one grows instead.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace bitexact::server {

class ConnectionPool : public httplib::TaskQueue {
 public:
  // `max_threads`: connections served at once; more wait in the queue, in arrival order.
  // `min_threads` stay up when idle; the others end after `idle_timeout` without work.
  ConnectionPool(size_t max_threads, size_t min_threads = 8,
                 std::chrono::milliseconds idle_timeout = std::chrono::seconds(30));
  ~ConnectionPool() override;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread (httplib calls it when it stops listening).
  void shutdown() override;

  size_t busy() const { return busy_; }        // connections being served now
  size_t threads() const { return threads_; }  // live threads
  size_t queued() const;                       // connections waiting for a thread
  // Connections that arrived with every thread busy and none left to start: they waited for
  // another connection to end. Zero while the limit is above the number of open connections.
  uint64_t waited() const { return waited_; }

 private:
  void work(std::list<std::thread>::iterator self);
  void reap();  // joins threads that retired (under mu_)

  const size_t max_threads_, min_threads_;
  const std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::list<std::thread> pool_;                            // live threads, and retired unjoined
  std::vector<std::list<std::thread>::iterator> retired_;  // ended, to join
  size_t idle_ = 0;                                        // threads waiting for work
  std::atomic<size_t> busy_{0}, threads_{0};
  std::atomic<uint64_t> waited_{0};
  bool shutdown_ = false;
};

}  // namespace bitexact::server
