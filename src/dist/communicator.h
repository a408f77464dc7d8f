// The collectives tensor parallelism needs, behind one interface: all_gather and broadcast. They
// move bytes and never add: a reduction inside a collective would take an order that depends on
// the transport and the message size (ARCHITECTURE.md rule 5), so ranks gather partial results
// and every rank folds them in one fixed order itself (ops::sum_partials).
#pragma once

#include <cstddef>

#include "core/tensor.h"

namespace bitexact::dist {

// One rank's handle on a group of `size()` ranks. Every rank calls each collective in the same
// sequence with the same byte counts. Memory lives on device(): host memory for the in-process
// group, the rank's GPU for NCCL.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const = 0;

  // recv holds size() * bytes; rank i's `send` lands at recv + i * bytes. `send` may be
  // recv + rank() * bytes (in place). stream: the rank's CUDA stream (unused on the CPU). On
  // return the CPU group's data is in place; NCCL's is queued on the stream.
  virtual void all_gather(const void* send, void* recv, size_t bytes, void* stream) = 0;
  // Copies root's buf into every rank's buf.
  virtual void broadcast(void* buf, size_t bytes, int root, void* stream) = 0;
  // Called by a rank that failed: collectives blocked now or called later, on every rank, throw
  // instead of waiting forever for it.
  virtual void abort() = 0;
};

// Typed all_gather: recv is [size(), ...send's shape], both contiguous and of one dtype.
void all_gather(Communicator& comm, const Tensor& send, Tensor& recv, void* stream);

}  // namespace bitexact::dist
