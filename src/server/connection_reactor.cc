#include "server/connection_reactor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "core/error.h"

namespace nc::server {

namespace {

using std::chrono::milliseconds;

constexpr char k408[] =
    "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
constexpr milliseconds kDrainFor{200};
constexpr size_t kDrainMax = size_t(1) << 20;

}  // namespace

ConnectionReactor::ConnectionReactor(size_t header_cap, milliseconds header_timeout, Ready ready)
    : header_cap_(header_cap), header_timeout_(header_timeout), ready_(std::move(ready)) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  NC_CHECK(epfd_ >= 0, "server: epoll_create1 failed (errno {})", errno);
  wakefd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  NC_CHECK(wakefd_ >= 0, "server: eventfd failed (errno {})", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wakefd_;
  NC_CHECK(::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) == 0,
           "server: epoll_ctl of the wake-up fd failed (errno {})", errno);
  thread_ = std::thread([this] { run(); });
}

ConnectionReactor::~ConnectionReactor() {
  stop();
  ::close(wakefd_);
  ::close(epfd_);
}

void ConnectionReactor::park(std::shared_ptr<HttpConnection> c) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;  // dropped: closed with its last reference
    incoming_.push_back(std::move(c));
  }
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wakefd_, &one, sizeof(one));
}

void ConnectionReactor::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wakefd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void ConnectionReactor::run() {
  epoll_event events[256];
  for (;;) {
    const int n = ::epoll_wait(epfd_, events, 256, wait_ms());
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wakefd_) {
        woken = true;
      } else {
        on_readable(events[i].data.fd);
      }
    }
    if (woken) {
      uint64_t count = 0;
      [[maybe_unused]] const ssize_t r = ::read(wakefd_, &count, sizeof(count));
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) break;
    }
    take_incoming();
    expire(ConnClock::now());
  }
  // Stopped: every parked connection closes (their destructors), nothing is handed back.
  std::lock_guard<std::mutex> lk(mu_);
  incoming_.clear();
  for (auto& [fd, e] : parked_) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  parked_.clear();
  deadlines_.clear();
  parked_count_ = 0;
}

int ConnectionReactor::wait_ms() const {
  if (deadlines_.empty()) return -1;
  const auto left = deadlines_.begin()->first - ConnClock::now();
  if (left <= ConnClock::duration::zero()) return 0;
  return int(std::min<int64_t>(std::chrono::ceil<milliseconds>(left).count(), 1 << 30));
}

void ConnectionReactor::take_incoming() {
  std::vector<std::shared_ptr<HttpConnection>> batch;
  {
    std::lock_guard<std::mutex> lk(mu_);
    batch.swap(incoming_);
  }
  for (auto& c : batch) add(std::move(c));
}

void ConnectionReactor::add(std::shared_ptr<HttpConnection> c) {
  const int fd = c->fd();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;  // level-triggered: bytes already there are reported at once
  ev.data.fd = fd;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return;  // dropped: closed
  const auto deadline = c->parked_deadline();
  Entry& e = parked_[fd];
  e.conn = std::move(c);
  e.deadline = deadline;
  deadlines_.emplace(deadline, fd);
  ++parked_count_;
}

std::shared_ptr<HttpConnection> ConnectionReactor::remove(int fd) {
  auto it = parked_.find(fd);
  if (it == parked_.end()) return nullptr;
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  deadlines_.erase({it->second.deadline, fd});
  std::shared_ptr<HttpConnection> c = std::move(it->second.conn);
  parked_.erase(it);
  --parked_count_;
  return c;
}

void ConnectionReactor::set_deadline(int fd, Entry& e, ConnClock::time_point deadline) {
  deadlines_.erase({e.deadline, fd});
  e.deadline = deadline;
  deadlines_.emplace(deadline, fd);
}

void ConnectionReactor::on_readable(int fd) {
  auto it = parked_.find(fd);
  if (it == parked_.end()) return;
  Entry& e = it->second;
  if (!e.draining) {
    read_request(fd, e);
    return;
  }
  char buf[4096];
  size_t drained = 0;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0 && (drained += size_t(n)) < kDrainMax) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // more may come
    break;  // the peer closed, an error, or too much
  }
  remove(fd);  // the last reference: closed
}

void ConnectionReactor::read_request(int fd, Entry& e) {
  HttpConnection& c = *e.conn;
  const bool had_bytes = c.stream.buffered();
  bool peer_gone = false;
  while (!c.stream.header_buffered(header_cap_)) {
    const ssize_t n = c.stream.fill_now(header_cap_);
    if (n > 0) continue;
    peer_gone = n == 0 || n == -2;
    break;
  }
  if (c.stream.header_buffered(header_cap_)) {
    ready_(remove(fd));  // a request to serve, even from a peer that half-closed after it
    return;
  }
  if (peer_gone) {
    remove(fd);
    return;
  }
  // The first byte of a later request's header starts that header's deadline.
  if (!had_bytes && c.stream.buffered() && c.served > 0) {
    c.header_due = ConnClock::now() + header_timeout_;
    set_deadline(fd, e, c.header_due);
  }
}

void ConnectionReactor::expire(ConnClock::time_point now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const int fd = deadlines_.begin()->second;
    Entry& e = parked_.at(fd);
    if (e.draining || !e.conn->stream.buffered()) {
      remove(fd);  // drained, or idle / silent past its deadline: closed
      continue;
    }
    // A header begun and cut off by its deadline: 408, then a graceful close.
    ::send(fd, k408, sizeof(k408) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
    e.draining = true;
    set_deadline(fd, e, now + kDrainFor);
  }
}

}  // namespace nc::server
