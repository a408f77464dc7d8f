// NcclGroup: ncclCommInitAll over the listed devices, byte-typed all_gather and broadcast queued
// on each rank's stream, ncclCommAbort on failure. Without NCCL the group reports unsupported.
#include "dist/nccl_communicator.h"

#include <string>

#ifdef BITEXACT_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace bitexact::dist {

#ifdef BITEXACT_WITH_NCCL
namespace {

void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    fail(ErrorKind::kInternal, std::string("NCCL ") + what + ": " + ncclGetErrorString(r));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device)
      : comm_(comm), rank_(rank), size_(size), device_(device) {}
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::kCuda; }

  // Bytes (ncclUint8): a gather is a copy whatever algorithm NCCL picks.
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
    cudaSetDevice(device_);
    nccl_check(
        ncclAllGather(send, recv, bytes, ncclUint8, comm_, static_cast<cudaStream_t>(stream)),
        "all_gather");
  }
  void broadcast(void* buf, size_t bytes, int root, void* stream) override {
    cudaSetDevice(device_);
    nccl_check(
        ncclBroadcast(buf, buf, bytes, ncclUint8, root, comm_, static_cast<cudaStream_t>(stream)),
        "broadcast");
  }
  void abort() override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  ncclComm_t comm_;
  int rank_, size_, device_;
};

}  // namespace

NcclGroup::NcclGroup(const std::vector<int>& devices) {
  const int n = int(devices.size());
  if (n < 1) fail(ErrorKind::kInvalidArgument, "an NCCL group needs at least one device");
  std::vector<ncclComm_t> comms(size_t(n), nullptr);
  ncclResult_t r = ncclCommInitAll(comms.data(), n, devices.data());
  if (r != ncclSuccess)
    fail(ErrorKind::kUnsupported, std::string("NCCL could not set up ") + std::to_string(n) +
                                      " GPUs: " + ncclGetErrorString(r));
  for (int i = 0; i < n; ++i)
    ranks_.push_back(
        std::make_unique<NcclCommunicator>(comms[size_t(i)], i, n, devices[size_t(i)]));
}

bool nccl_available() { return true; }

#else

NcclGroup::NcclGroup(const std::vector<int>&) {
  fail(ErrorKind::kUnsupported,
       "this build has no NCCL (configure with CUDA and NCCL for GPU tensor parallelism)");
}

bool nccl_available() { return false; }

#endif

NcclGroup::~NcclGroup() = default;

}  // namespace bitexact::dist
