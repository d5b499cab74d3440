// TCP links with deadlines (dist/tcp_link.h).
#include "dist/tcp_link.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace nc {
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

// The first IPv4 address of host:port (numeric or a name).
sockaddr_storage resolve(const HostPort& hp, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(hp.port);
  const int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &found);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rc == 0 && found,
              "tensor parallel: cannot resolve '{}': {}", hp.host, gai_strerror(rc));
  sockaddr_storage out{};
  std::memcpy(&out, found->ai_addr, found->ai_addrlen);
  *len = found->ai_addrlen;
  freeaddrinfo(found);
  return out;
}

void set_no_delay(int fd) {
  const int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // small messages: no Nagle
}

}  // namespace

HostPort parse_host_port(const std::string& text) {
  const size_t colon = text.rfind(':');
  NC_CHECK_AS(ErrorKind::InvalidArgument, colon != std::string::npos && colon > 0,
              "distributed address '{}': expected host:port", text);
  HostPort hp{text.substr(0, colon), 0};
  const std::string port = text.substr(colon + 1);
  char* end = nullptr;
  const long p = port.empty() ? -1 : std::strtol(port.c_str(), &end, 10);
  NC_CHECK_AS(ErrorKind::InvalidArgument, end && *end == '\0' && p >= 1 && p <= 65535,
              "distributed address '{}': port '{}' is not in 1..65535", text, port);
  hp.port = int(p);
  return hp;
}

int Deadline::poll_ms() const {
  if (unbounded()) return -1;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(at_ - std::chrono::steady_clock::now());
  return int(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

TcpLink::~TcpLink() {
  if (fd_ >= 0) ::close(fd_);
}

bool TcpLink::readable() const {
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

void TcpLink::wait(short events, Deadline deadline, const char* what, size_t done, size_t bytes) {
  pollfd p{fd_, events, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, deadline.poll_ms());
    if (rc > 0) return;  // ready, or an error that the read or write reports
    if (rc < 0 && errno == EINTR) continue;
    NC_CHECK(rc < 0, "tensor parallel: timed out in {} with {} ({} of {} bytes)", what, peer_, done,
             bytes);
    fail("tensor parallel: poll() in {} with {}: {}", what, peer_, errno_text());
  }
}

void TcpLink::send(const void* data, size_t bytes, Deadline deadline, const char* what) {
  const auto* p = static_cast<const char*>(data);
  for (size_t done = 0; done < bytes;) {
    wait(POLLOUT, deadline, what, done, bytes);
    const ssize_t n = ::send(fd_, p + done, bytes - done, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    NC_CHECK(n > 0, "tensor parallel: {} lost in {} ({})", peer_, what, errno_text());
    done += size_t(n);
  }
}

void TcpLink::recv(void* data, size_t bytes, Deadline deadline, const char* what) {
  auto* p = static_cast<char*>(data);
  for (size_t done = 0; done < bytes;) {
    wait(POLLIN, deadline, what, done, bytes);
    const ssize_t n = ::recv(fd_, p + done, bytes - done, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    NC_CHECK(n != 0, "tensor parallel: {} closed the connection in {} (its process ended?)", peer_,
             what);
    NC_CHECK(n > 0, "tensor parallel: {} lost in {} ({})", peer_, what, errno_text());
    done += size_t(n);
  }
}

TcpListener::TcpListener(const HostPort& at) {
  socklen_t len = 0;
  sockaddr_storage addr = resolve(at.port == 0 ? HostPort{at.host, 1} : at, &len);
  if (at.port == 0) reinterpret_cast<sockaddr_in*>(&addr)->sin_port = 0;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  NC_CHECK(fd_ >= 0, "tensor parallel: socket(): {}", errno_text());
  const int one = 1;
  (void)setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 128) != 0) {
    const std::string why = errno_text();
    ::close(fd_);
    fail_as(ErrorKind::InvalidArgument, "tensor parallel: cannot listen on {}:{}: {}", at.host,
            at.port, why);
  }
  sockaddr_in bound{};
  socklen_t blen = sizeof(bound);
  (void)getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &blen);
  port_ = ntohs(bound.sin_port);
}

TcpListener::~TcpListener() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<TcpLink> TcpListener::accept(Deadline deadline) {
  pollfd p{fd_, POLLIN, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, deadline.poll_ms());
    NC_CHECK(rc != 0, "tensor parallel: no rank connected to port {} in time", port_);
    if (rc < 0 && errno == EINTR) continue;
    NC_CHECK(rc > 0, "tensor parallel: poll(): {}", errno_text());
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
    NC_CHECK(fd >= 0, "tensor parallel: accept(): {}", errno_text());
    set_no_delay(fd);
    return std::make_unique<TcpLink>(fd, "a rank connecting");
  }
}

// One non-blocking connect, finished within `wait_ms`; the error text, or "" when connected.
std::string try_connect(int fd, const sockaddr_storage& addr, socklen_t len, int wait_ms) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) return {};
  if (errno != EINPROGRESS) return errno_text();
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, wait_ms) <= 0) return "no answer";
  int err = 0;
  socklen_t elen = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return errno_text();
  return err == 0 ? std::string() : std::string(std::strerror(err));
}

std::string free_local_address() {
  const TcpListener probe(HostPort{"127.0.0.1", 0});
  return fmt::format("127.0.0.1:{}", probe.port());
}

std::unique_ptr<TcpLink> tcp_connect(const HostPort& to, Deadline deadline) {
  socklen_t len = 0;
  const sockaddr_storage addr = resolve(to, &len);
  for (;;) {
    // Non-blocking, as every link is: no call waits past its deadline.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    NC_CHECK(fd >= 0, "tensor parallel: socket(): {}", errno_text());
    const int left = deadline.poll_ms();
    const std::string why = try_connect(fd, addr, len, left < 0 ? 1000 : std::min(left, 1000));
    if (why.empty()) {
      set_no_delay(fd);
      return std::make_unique<TcpLink>(fd, fmt::format("rank 0 at {}:{}", to.host, to.port));
    }
    ::close(fd);
    // Rank 0 may not listen yet: retry until the deadline.
    NC_CHECK(deadline.poll_ms() != 0, "tensor parallel: cannot reach rank 0 at {}:{}: {}", to.host,
             to.port, why);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace nc
