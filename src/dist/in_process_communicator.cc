// The in-process group: a generation-counting barrier and a table of the buffers each rank
// published for the current collective. Pure memcpy; nothing is added or converted.
#include "dist/in_process_communicator.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

namespace bitexact::dist {

struct InProcessGroup::Shared {
  explicit Shared(int n) : size(n), ptrs(size_t(n)), bytes(size_t(n)) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
  std::vector<const void*> ptrs;  // [size] what each rank published for this collective
  std::vector<size_t> bytes;      // [size]

  [[noreturn]] static void aborted_error() {
    fail(ErrorKind::kInternal, "tensor-parallel group aborted: another rank failed");
  }
  void publish(int rank, const void* p, size_t n) {
    std::lock_guard<std::mutex> lk(mu);
    if (aborted) aborted_error();
    ptrs[size_t(rank)] = p;
    bytes[size_t(rank)] = n;
  }
  void barrier() {
    std::unique_lock<std::mutex> lk(mu);
    if (aborted) aborted_error();
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lk, [&] { return generation != gen || aborted; });
    if (aborted) aborted_error();
  }
  void abort() {
    std::lock_guard<std::mutex> lk(mu);
    aborted = true;
    cv.notify_all();
  }
  // Every rank sees the same table, so a mismatch makes all of them throw, none wait.
  void check_sizes(const char* op) const {
    for (size_t n : bytes)
      if (n != bytes[0])
        fail(ErrorKind::kInternal, std::string(op) + ": ranks passed different byte counts (" +
                                       std::to_string(bytes[0]) + " vs " + std::to_string(n) + ")");
  }
};

namespace {

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<InProcessGroup::Shared> s, int rank)
      : s_(std::move(s)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return s_->size; }
  Device device() const override { return Device::kCpu; }

  void all_gather(const void* send, void* recv, size_t bytes, void*) override {
    s_->publish(rank_, send, bytes);
    s_->barrier();
    s_->check_sizes("all_gather");
    char* out = static_cast<char*>(recv);
    for (int i = 0; i < s_->size; ++i) {
      char* dst = out + size_t(i) * bytes;
      if (s_->ptrs[size_t(i)] != dst) std::memcpy(dst, s_->ptrs[size_t(i)], bytes);
    }
    s_->barrier();  // a rank may reuse its send buffer only after every rank has read it
  }

  void broadcast(void* buf, size_t bytes, int root, void*) override {
    BITEXACT_CHECK(root >= 0 && root < s_->size, "broadcast: root out of range");
    s_->publish(rank_, buf, bytes);
    s_->barrier();
    s_->check_sizes("broadcast");
    if (rank_ != root && s_->ptrs[size_t(root)] != buf)
      std::memcpy(buf, s_->ptrs[size_t(root)], bytes);
    s_->barrier();
  }

  void abort() override { s_->abort(); }

 private:
  std::shared_ptr<InProcessGroup::Shared> s_;
  int rank_;
};

}  // namespace

InProcessGroup::InProcessGroup(int size) {
  if (size < 1) fail(ErrorKind::kInvalidArgument, "a process group needs at least one rank");
  shared_ = std::make_shared<Shared>(size);
  for (int r = 0; r < size; ++r)
    ranks_.push_back(std::make_unique<InProcessCommunicator>(shared_, r));
}

InProcessGroup::~InProcessGroup() = default;

}  // namespace bitexact::dist
