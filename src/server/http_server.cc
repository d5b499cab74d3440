#include "server/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace nc::server {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct ConnectionFlags {
  bool rejected = false;
  bool close_after = false;
  bool timed_out = false;     // the current request's deadline passed while reading it
  bool last_request = false;  // httplib writes "Connection: close" itself
};
thread_local ConnectionFlags* t_flags = nullptr;
thread_local bool t_rejecting = false;  // set by the pool of connections beyond the cap

// Waits for `events` on fd until `until`; true when they (or a hang-up / error) came.
bool poll_until(int fd, short events, Clock::time_point until) {
  for (;;) {
    const auto now = Clock::now();
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

// One connection's socket, read through a buffer that lives as long as the connection (so the
// bytes of a pipelined request read ahead are kept), under the current request's deadline.
class ConnectionStream final : public httplib::Stream {
 public:
  // `listener` is the server's listening socket: INVALID_SOCKET once it stops, which ends a wait.
  ConnectionStream(socket_t fd, const HttpLimits& limits, const std::atomic<socket_t>& listener)
      : fd_(fd), limits_(limits), listener_(listener) {}

  // The reads of a request's header from now on end by `deadline`.
  void begin_request(Clock::time_point deadline) {
    deadline_ = deadline;
    deadline_hit_ = false;
    got_bytes_ = false;
    wrote_ = false;
    in_header_ = true;
    if (t_flags) t_flags->timed_out = false;
  }
  void begin_body(Clock::time_point deadline) {
    deadline_ = deadline;
    in_header_ = false;
  }
  bool buffered() const { return pos_ < end_; }
  // A request header started, was cut off by its deadline, and nothing was answered.
  bool header_cut_off() const { return in_header_ && got_bytes_ && deadline_hit_ && !wrote_; }

  bool is_readable() const override { return buffered() || wait_readable(); }
  // Writable within the per-send timeout; a stalled reader is given up within 100 ms of stop.
  bool is_writable() const override {
    // The last words after stop (a stream's error event) are still written if they can be.
    const auto until = Clock::now() + limits_.write_timeout;
    for (auto now = Clock::now(); now < until; now = Clock::now()) {
      if (poll_until(fd_, POLLOUT, std::min(until, now + milliseconds(100)))) return true;
      if (listener_.load() == INVALID_SOCKET) break;
    }
    return false;
  }
  ssize_t read(char* ptr, size_t size) override {
    if (!buffered()) {
      if (!wait_readable()) return -1;
      ssize_t n = 0;
      do {
        n = ::recv(fd_, buf_, sizeof(buf_), 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      pos_ = 0;
      end_ = size_t(n);
    }
    const size_t k = std::min(size, end_ - pos_);
    std::memcpy(ptr, buf_ + pos_, k);
    pos_ += k;
    got_bytes_ = true;
    return ssize_t(k);
  }
  ssize_t write(const char* ptr, size_t size) override {
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
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  // Readable within the per-recv timeout and the request's deadline.
  bool wait_readable() const {
    const auto until = std::min(Clock::now() + limits_.read_timeout, deadline_);
    for (auto now = Clock::now(); now < until && listener_.load() != INVALID_SOCKET;
         now = Clock::now()) {
      if (poll_until(fd_, POLLIN, std::min(until, now + milliseconds(100)))) return true;
    }
    if (Clock::now() >= deadline_) {
      deadline_hit_ = true;
      if (t_flags) t_flags->timed_out = true;
    }
    return false;
  }

  socket_t fd_;
  const HttpLimits& limits_;
  const std::atomic<socket_t>& listener_;
  Clock::time_point deadline_ = Clock::time_point::max();
  mutable bool deadline_hit_ = false;
  bool got_bytes_ = false, wrote_ = false, in_header_ = true;
  char buf_[4096];
  size_t pos_ = 0, end_ = 0;
};

// Shuts the write side, drains what the client still sends for a moment (so that it reads the
// response rather than a reset caused by unread input), then closes.
void close_gracefully(socket_t fd) {
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + milliseconds(200);
  char buf[4096];
  for (size_t drained = 0; drained < (size_t(1) << 20);) {
    if (!poll_until(fd, POLLIN, until)) break;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    drained += size_t(n);
  }
  ::close(fd);
}

// Worker threads started on demand up to a maximum (never more than the jobs need). `waiting`
// counts the jobs that no worker is free for: a worker just started for a job counts as free,
// so a connection is not seen waiting in the moment before its new worker takes it.
class Workers {
 public:
  Workers(int max_threads, std::shared_ptr<std::atomic<int>> waiting,
          std::shared_ptr<std::atomic<int>> started)
      : max_(size_t(std::max(1, max_threads))),
        waiting_(std::move(waiting)),
        started_(std::move(started)) {}

  void enqueue(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      jobs_.push_back(std::move(fn));
      if (jobs_.size() > free_ && threads_.size() < max_) {
        threads_.emplace_back([this] { run(); });
        ++free_;
        if (started_) ++*started_;
      }
      publish_waiting();
    }
    cv_.notify_one();
  }
  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return !jobs_.empty() || stop_; });
      if (jobs_.empty()) return;  // stopped, and every job was taken
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      --free_;
      publish_waiting();
      lk.unlock();
      fn();
      fn = nullptr;
      lk.lock();
      ++free_;
      publish_waiting();
    }
  }
  void publish_waiting() {  // under mu_
    if (waiting_) *waiting_ = jobs_.size() > free_ ? int(jobs_.size() - free_) : 0;
  }

  size_t max_;
  std::shared_ptr<std::atomic<int>> waiting_, started_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t free_ = 0;  // workers waiting for a job, or started for one and not yet taking it
  bool stop_ = false;
};

}  // namespace

// The connections under the cap go to the workers; those beyond it to two threads of their own,
// which answer 503 (connection_rejected()).
class HttpServer::Pool : public httplib::TaskQueue {
 public:
  Pool(const HttpLimits& l, std::shared_ptr<std::atomic<int>> open,
       std::shared_ptr<std::atomic<int>> waiting, std::shared_ptr<std::atomic<int>> started)
      : max_connections_(l.max_connections),
        open_(std::move(open)),
        workers_(l.max_threads, std::move(waiting), std::move(started)),
        rejecters_(2, nullptr, nullptr) {}

  void enqueue(std::function<void()> fn) override {
    if (open_->load() >= max_connections_) {
      rejecters_.enqueue([fn = std::move(fn)] {
        t_rejecting = true;
        fn();
        t_rejecting = false;
      });
      return;
    }
    ++*open_;
    workers_.enqueue([fn = std::move(fn), open = open_] {
      fn();
      --*open;
    });
  }
  void shutdown() override {
    workers_.shutdown();
    rejecters_.shutdown();
  }

 private:
  int max_connections_;
  std::shared_ptr<std::atomic<int>> open_;
  Workers workers_, rejecters_;
};

bool can_bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0) return false;
  bool ok = false;
  for (addrinfo* a = found; a != nullptr && !ok; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    ok = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1) == 0;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return ok;
}

bool request_timed_out() {
  return t_flags != nullptr && t_flags->timed_out;
}

bool connection_rejected() {
  return t_flags != nullptr && t_flags->rejected;
}

void close_connection_after(httplib::Response& res) {
  if (t_flags) t_flags->close_after = true;
  const bool httplib_says_close = t_flags != nullptr && t_flags->last_request;
  if (!httplib_says_close && !res.has_header("Connection")) res.set_header("Connection", "close");
}

HttpServer::HttpServer(HttpLimits limits) : limits_(limits) {
  new_task_queue = [this] { return new Pool(limits_, open_, waiting_, threads_); };
  set_keep_alive_max_count(std::max<size_t>(1, limits_.keep_alive_max_requests));
  set_keep_alive_timeout(std::max<time_t>(1, limits_.idle_timeout.count() / 1000));
}

HttpServer::~HttpServer() = default;

void HttpServer::widen_backlog(int n) {
  const auto sock = svr_sock_.load();
  if (sock != INVALID_SOCKET) ::listen(sock, n);
}

bool HttpServer::workers_starved() const {
  return waiting_->load() > 0 && threads_->load() >= std::max(1, limits_.max_threads);
}

int HttpServer::worker_threads() const {
  return threads_->load();
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  return serve_connection(sock);
}

// Idle between keep-alive requests, or silent since the accept: waits for a request's first
// byte (up to the idle timeout, or the header timeout for the first request), giving the worker
// up (false: the connection closes) at once when connections wait for one and no more workers
// may start, so that silent connections never hold workers from those that send.
bool HttpServer::wait_for_request(socket_t sock, size_t served) const {
  const auto until = Clock::now() + (served > 0 ? limits_.idle_timeout : limits_.header_timeout);
  while (Clock::now() < until && svr_sock_.load() != INVALID_SOCKET) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) return true;  // already readable
    if (workers_starved()) return false;
    if (poll_until(sock, POLLIN, std::min(until, Clock::now() + milliseconds(50)))) return true;
  }
  return false;
}

// A connection beyond the cap that has sent nothing yet is answered 503 and closed at once,
// without waiting for its request: silent connections must not hold the two threads that answer
// them (the routes answer those that did send, with the same body).
bool HttpServer::refused_silently(socket_t sock) const {
  pollfd p{sock, POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) return false;
  const std::string body = fmt::format(
      R"x({{"error":{{"message":"too many connections (the limit is {})","type":"server_error",)x"
      R"x("param":null,"code":"too_many_connections"}}}})x",
      limits_.max_connections);
  const std::string response = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json"
      "\r\nContent-Length: {}\r\n\r\n{}",
      body.size(), body);
  ::send(sock, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return true;
}

bool HttpServer::serve_connection(socket_t sock) {
  if (t_rejecting && refused_silently(sock)) return false;
  ConnectionFlags flags;
  flags.rejected = t_rejecting;
  t_flags = &flags;
  ConnectionStream strm(sock, limits_, svr_sock_);
  const auto accepted = Clock::now();
  bool ok = false;
  for (size_t served = 0; svr_sock_.load() != INVALID_SOCKET; ++served) {
    if (!strm.buffered() && !wait_for_request(sock, served)) break;
    // The first request's header is due from the accept, the next ones' from their first byte.
    strm.begin_request((served == 0 ? accepted : Clock::now()) + limits_.header_timeout);
    const bool last = flags.rejected || served + 1 >= keep_alive_max_count_;
    flags.last_request = last;
    bool closed = false;
    ok = process_request(strm, last, closed, [&](httplib::Request&) {
      strm.begin_body(Clock::now() + limits_.body_timeout);
    });
    if (!ok || closed || last || flags.close_after) break;
  }
  if (strm.header_cut_off()) {
    const char kTimeout[] =
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    strm.write(kTimeout, sizeof(kTimeout) - 1);
    flags.close_after = true;
  }
  t_flags = nullptr;
  if (flags.close_after || strm.buffered()) {
    close_gracefully(sock);
  } else {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
  return ok;
}

}  // namespace nc::server
