// Errors as the OpenAI API reports them: an HTTP status plus {"error": {message, type, param,
// code}}. Request handling throws ApiError; the HTTP layer turns it (and any other exception)
// into a response, so no exception ever crosses a request boundary.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace bitexact::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "")
      : std::runtime_error(std::move(message)), status_(status), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }

 private:
  int status_;
  std::string param_;
};

// 400 naming the parameter at fault: the message a client sees is "`param`: what".
[[noreturn]] inline void bad_request(const std::string& param, const std::string& what) {
  throw ApiError(400, param.empty() ? what : "`" + param + "`: " + what, param);
}

// OpenAI's error type string for a status ("invalid_request_error", "authentication_error", ...).
const char* error_type_for_status(int status);

// {"error": {"message", "type", "param", "code"}}; `code` is the HTTP status (as vLLM does), and
// `param` is null when no single parameter is at fault.
nlohmann::json error_body(int status, const std::string& message, const std::string& param = "");

}  // namespace bitexact::server
