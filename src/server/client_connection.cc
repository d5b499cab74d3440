#include "server/client_connection.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace nc::server {

namespace {

// The port and address of a socket's local end (peer = false) or its peer's.
bool port_and_addr(int fd, bool peer, int& port, std::string& addr) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    port = ntohs(a->sin_port);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    port = ntohs(a->sin6_port);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
  } else {
    return false;
  }
  addr = buf;
  return true;
}

bool is_listening(int fd) {
  int on = 0;
  socklen_t len = sizeof(on);
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on != 0;
}

}  // namespace

bool ClientConnection::closed_every(std::chrono::milliseconds every) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_check_ < every) return false;
  last_check_ = now;
  return closed();
}

bool ClientConnection::closed() {
  if (fd_ == kNotLookedUp) fd_ = find_socket();
  if (fd_ == kGone) return true;
  if (fd_ < 0) return false;  // not found: assume it is there
  // POLLRDHUP: the peer's end arrived, even behind bytes not read yet (a pipelined request, a
  // stray CRLF), which a peek at the next byte would take for a live client.
  pollfd p{fd_, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

int ClientConnection::find_socket() const {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = kNotFound;
  int peerless = 0;  // connections on the server's port whose peer is gone
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    int port = 0;
    std::string addr;
    if (!port_and_addr(int(fd), false, port, addr) || port != local_port_) continue;
    if (!port_and_addr(int(fd), true, port, addr)) {
      peerless += errno == ENOTCONN && !is_listening(int(fd));
      continue;
    }
    if (port != remote_port_ || addr != remote_addr_) continue;
    found = int(fd);
    break;
  }
  ::closedir(dir);
  // Our socket stays open while the handler runs. If no connected socket has our peer, ours is
  // one whose peer reset it before the first look (getpeername: ENOTCONN), so the client left;
  // sure only when exactly one such socket exists (else another client's reset could be it).
  return found == kNotFound && peerless == 1 ? kGone : found;
}

}  // namespace nc::server
