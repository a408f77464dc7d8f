// Noticing that a client went away while its request is still generating. cpp-httplib 0.11 (the
// Debian version) gives handlers no view of their socket (req.is_connection_closed() came later),
// so the socket is found from the request's two addresses, which identify one live connection.
#pragma once

#include <string>

namespace httplib {
struct Request;
}

namespace bitexact::server {

class ClientSocket {
 public:
  // Copies the request's addresses: a streaming response polls after the handler returned.
  explicit ClientSocket(const httplib::Request& req);

  // True once the peer has closed (or reset) the connection. The socket is looked up on the first
  // call only, so requests that finish before anyone asks pay nothing. A socket that cannot be
  // found (not TCP, or already gone) counts as open: never abort on a guess.
  bool closed();

 private:
  std::string remote_addr_, local_addr_;
  int remote_port_ = -1, local_port_ = -1;
  int fd_ = -2;  // -2: not looked up yet; -1: not found
};

}  // namespace bitexact::server
