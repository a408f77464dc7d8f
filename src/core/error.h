// Typed errors with messages a user can act on. Everything that reads outside input (files,
// configs, requests) throws bitexact::Error; callers at a process or request boundary catch it.
#pragma once

#include <stdexcept>
#include <string>

namespace bitexact {

enum class ErrorKind {
  kInvalidArgument,  // bad user input: a parameter, a request field, a CLI flag
  kIo,               // a file could not be opened, read or mapped
  kFormat,           // a file was read but its content is malformed (truncated, corrupt)
  kUnsupported,      // well-formed but not handled: unknown architecture, dtype, component
  kOutOfResources,   // KV cache, memory, queue capacity
  kInternal,         // a bug: an invariant of the engine itself was broken
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}

// Checks an internal invariant; input validation uses fail() with a user-facing message instead.
#define BITEXACT_CHECK(cond, msg)                                                           \
  do {                                                                                      \
    if (!(cond))                                                                            \
      ::bitexact::fail(::bitexact::ErrorKind::kInternal,                                    \
                       std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + (msg)); \
  } while (0)

}  // namespace bitexact
