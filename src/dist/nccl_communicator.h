// Ranks that are GPUs of one host, one thread per GPU, over NCCL (the existing engine for
// collectives; no hand-rolled transport). Only byte-typed ncclAllGather and ncclBroadcast are
// used: NCCL never adds anything, so its ring/tree choice cannot change a single bit.
// Built when BITEXACT_NCCL is on; compiled here, not yet run on real GPUs (issue #8).
#pragma once

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace bitexact::dist {

class NcclGroup {
 public:
  // One communicator per device of `devices` (rank r drives devices[r]), made together with
  // ncclCommInitAll. Throws Error(kUnsupported) when NCCL fails to set the group up.
  explicit NcclGroup(const std::vector<int>& devices);
  ~NcclGroup();
  int size() const { return int(ranks_.size()); }
  Communicator& rank(int r) { return *ranks_.at(size_t(r)); }

 private:
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

// Whether this build has NCCL (BITEXACT_WITH_NCCL).
bool nccl_available();

}  // namespace bitexact::dist
