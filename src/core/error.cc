// Names of error kinds, for messages and HTTP error types.
#include "core/error.h"

namespace bitexact {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid_argument";
    case ErrorKind::kIo: return "io_error";
    case ErrorKind::kFormat: return "format_error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kOutOfResources: return "out_of_resources";
    case ErrorKind::kInternal: return "internal_error";
  }
  return "unknown";
}

}  // namespace bitexact
