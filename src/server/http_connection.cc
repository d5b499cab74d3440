#include "server/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nc::server {

namespace {

using std::chrono::milliseconds;

// Waits for `events` on fd until `until`; true when they (or a hang-up / error) came.
bool poll_until(int fd, short events, ConnClock::time_point until) {
  for (;;) {
    const auto now = ConnClock::now();
    if (now >= until) return false;
    const auto left = std::chrono::ceil<milliseconds>(until - now).count();  // not before `until`
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, int(std::min<int64_t>(left, 1 << 30)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

constexpr size_t kReadChunk = 4096;

}  // namespace

void ConnectionStream::begin_request(ConnClock::time_point deadline) {
  deadline_ = deadline;
  deadline_hit_ = false;
  got_bytes_ = false;
  wrote_ = false;
  in_header_ = true;
  flags_.timed_out = false;
}

void ConnectionStream::begin_body(ConnClock::time_point deadline) {
  deadline_ = deadline;
  in_header_ = false;
}

bool ConnectionStream::header_buffered(size_t cap) const {
  if (buf_.size() - pos_ >= cap) return true;
  const std::string_view rest(buf_.data() + pos_, buf_.size() - pos_);
  // httplib ends a header at an empty CRLF line; a bare "\n\n" is handed over too (the parser
  // then reads on under the header deadline, or refuses it).
  return rest.find("\r\n\r\n") != std::string_view::npos ||
         rest.find("\n\n") != std::string_view::npos;
}

void ConnectionStream::compact() {
  if (pos_ == 0) return;
  buf_.erase(0, pos_);
  pos_ = 0;
}

ssize_t ConnectionStream::fill_now(size_t cap) {
  compact();
  if (buf_.size() >= cap) return -1;
  const size_t old = buf_.size();
  buf_.resize(old + std::min(kReadChunk, cap - old));
  ssize_t n = 0;
  do {
    n = ::recv(fd_, buf_.data() + old, buf_.size() - old, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  buf_.resize(old + size_t(std::max<ssize_t>(n, 0)));
  if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
  return n;
}

void ConnectionStream::shrink_if_empty() {
  if (buffered()) return;
  std::string().swap(buf_);
  pos_ = 0;
}

// Writable within the per-send timeout; a stalled reader is given up within 100 ms of stop.
bool ConnectionStream::is_writable() const {
  // The last words after stop (a stream's error event) are still written if they can be.
  const auto until = ConnClock::now() + limits_.write_timeout;
  for (auto now = ConnClock::now(); now < until; now = ConnClock::now()) {
    if (poll_until(fd_, POLLOUT, std::min(until, now + milliseconds(100)))) return true;
    if (listener_.load() == INVALID_SOCKET) break;
  }
  return false;
}

ssize_t ConnectionStream::read(char* ptr, size_t size) {
  if (!buffered()) {
    if (!wait_readable()) return -1;
    buf_.resize(kReadChunk);
    pos_ = 0;
    ssize_t n = 0;
    do {
      n = ::recv(fd_, buf_.data(), buf_.size(), 0);
    } while (n < 0 && errno == EINTR);
    buf_.resize(size_t(std::max<ssize_t>(n, 0)));
    if (n <= 0) return n;
  }
  const size_t k = std::min(size, buf_.size() - pos_);
  std::memcpy(ptr, buf_.data() + pos_, k);
  pos_ += k;
  got_bytes_ = true;
  return ssize_t(k);
}

ssize_t ConnectionStream::write(const char* ptr, size_t size) {
  wrote_ = true;
  size_t done = 0;
  while (done < size) {
    if (!is_writable()) return done > 0 ? ssize_t(done) : -1;
    const ssize_t n = ::send(fd_, ptr + done, size - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return done > 0 ? ssize_t(done) : -1;
    done += size_t(n);
  }
  return ssize_t(done);
}

void ConnectionStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  address_of(fd_, true, ip, port);
}

void ConnectionStream::get_local_ip_and_port(std::string& ip, int& port) const {
  address_of(fd_, false, ip, port);
}

bool ConnectionStream::wait_readable() const {
  const auto until = std::min(ConnClock::now() + limits_.read_timeout, deadline_);
  for (auto now = ConnClock::now(); now < until && listener_.load() != INVALID_SOCKET;
       now = ConnClock::now()) {
    if (poll_until(fd_, POLLIN, std::min(until, now + milliseconds(100)))) return true;
  }
  if (ConnClock::now() >= deadline_) {
    deadline_hit_ = true;
    flags_.timed_out = true;
  }
  return false;
}

HttpConnection::HttpConnection(socket_t fd, const HttpLimits& limits,
                               const std::atomic<socket_t>& listener,
                               std::shared_ptr<std::atomic<int>> open)
    : stream(fd, limits, listener, flags),
      header_due(accepted + limits.header_timeout),
      fd_(fd),
      open_(std::move(open)) {}

HttpConnection::~HttpConnection() {
  if (fd_ != INVALID_SOCKET) close(false);
}

void HttpConnection::close(bool gracefully) {
  if (fd_ == INVALID_SOCKET) return;
  if (gracefully) {
    ::shutdown(fd_, SHUT_WR);
    const auto until = ConnClock::now() + milliseconds(200);
    char buf[4096];
    for (size_t drained = 0; drained < (size_t(1) << 20);) {
      if (!poll_until(fd_, POLLIN, until)) break;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      drained += size_t(n);
    }
  } else {
    ::shutdown(fd_, SHUT_RDWR);
  }
  ::close(fd_);
  fd_ = INVALID_SOCKET;
  if (open_) --*open_;
}

}  // namespace nc::server
