// Ranks that are threads of one process, for CPU emulation of tensor parallelism: collectives are
// a barrier and memcpy between the ranks' host buffers. The same model code that runs over NCCL
// runs over this, so CI checks the tensor-parallel math and its invariance without GPUs.
#pragma once

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace bitexact::dist {

class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  ~InProcessGroup();
  int size() const { return int(ranks_.size()); }
  // Rank r's communicator; call its collectives from one thread per rank.
  Communicator& rank(int r) { return *ranks_.at(size_t(r)); }

  struct Shared;  // the barrier and the published buffers

 private:
  std::shared_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

}  // namespace bitexact::dist
