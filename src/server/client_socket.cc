// ClientSocket: finds the connection's descriptor by matching getsockname/getpeername against the
// addresses httplib recorded for the request, then polls it for the peer's FIN or RST. While the
// handler runs, httplib keeps that socket open, so the descriptor cannot be reused under us; a
// 4-tuple belongs to one live TCP connection, so no other socket can match.
#include "server/client_socket.h"

#include <dirent.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstdlib>
#include <string>

namespace bitexact::server {
namespace {

// The numeric address and port of a socket end, written as httplib writes them.
bool address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  sockaddr* sa = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) return false;
  if (addr.ss_family == AF_INET)
    port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  else if (addr.ss_family == AF_INET6)
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  else
    return false;
  std::array<char, NI_MAXHOST> host{};
  if (getnameinfo(sa, len, host.data(), socklen_t(host.size()), nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  ip = host.data();
  return true;
}

int find_socket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                int local_port) {
  if (remote_port <= 0 || local_port <= 0) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  std::string ip;
  int port = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == dirfd(dir)) continue;
    // Ports first: one cheap call rules out nearly every other descriptor.
    if (!address_of(fd, /*peer=*/true, ip, port) || port != remote_port || ip != remote_addr)
      continue;
    if (!address_of(fd, /*peer=*/false, ip, port) || port != local_port || ip != local_addr)
      continue;
    found = fd;
    break;
  }
  closedir(dir);
  return found;
}

}  // namespace

ClientSocket::ClientSocket(const httplib::Request& req)
    : remote_addr_(req.remote_addr),
      local_addr_(req.local_addr),
      remote_port_(req.remote_port),
      local_port_(req.local_port) {}

bool ClientSocket::closed() {
  if (fd_ == -2) fd_ = find_socket(remote_addr_, remote_port_, local_addr_, local_port_);
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  if (p.revents & POLLIN) {
    // Readable without RDHUP: data the client sent ahead (a pipelined request), not a close.
    char c;
    return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

}  // namespace bitexact::server
