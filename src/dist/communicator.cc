// The typed wrapper over Communicator::all_gather: shape and dtype checks, then bytes.
#include "dist/communicator.h"

namespace bitexact::dist {

void all_gather(Communicator& comm, const Tensor& send, Tensor& recv, void* stream) {
  BITEXACT_CHECK(send.is_contiguous() && recv.is_contiguous(),
                 "all_gather: tensors must be contiguous");
  BITEXACT_CHECK(send.dtype == recv.dtype, "all_gather: dtypes differ");
  BITEXACT_CHECK(recv.numel() == send.numel() * comm.size(),
                 "all_gather: recv" + recv.shape_str() + " is not size x send" + send.shape_str());
  comm.all_gather(send.data, recv.data, send.nbytes(), stream);
}

}  // namespace bitexact::dist
