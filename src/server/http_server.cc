#include "server/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
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

#include "server/connection_reactor.h"
#include "server/http_connection.h"

namespace nc::server {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

thread_local ConnectionFlags* t_flags = nullptr;
thread_local bool t_rejecting = false;  // set by the pool of connections beyond the cap
thread_local bool t_accepting = false;  // set on the listening thread, which parks what it accepts

// Bytes of a request header the reactor gathers before a worker takes the connection anyway
// (httplib refuses a header line over 8 KiB; a longer header is the parser's to refuse).
constexpr size_t kHeaderCap = 64 << 10;

// Worker threads started on demand up to a maximum (never more than the jobs need): a job that
// finds no free worker starts one while fewer than the maximum run.
class Workers {
 public:
  Workers(int max_threads, std::shared_ptr<std::atomic<int>> started)
      : max_(size_t(std::max(1, max_threads))), started_(std::move(started)) {}

  void enqueue(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      jobs_.push_back(std::move(fn));
      if (jobs_.size() > free_ && threads_.size() < max_) {
        threads_.emplace_back([this] { run(); });
        ++free_;
        if (started_) ++*started_;
      }
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
      lk.unlock();
      fn();
      fn = nullptr;
      lk.lock();
      ++free_;
    }
  }

  size_t max_;
  std::shared_ptr<std::atomic<int>> started_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t free_ = 0;  // workers waiting for a job, or started for one and not yet taking it
  bool stop_ = false;
};

}  // namespace

// The connections under the cap go to the workers, and between requests to the reactor; those
// beyond it to two threads of their own, which answer 503 (connection_rejected()).
class HttpServer::Pool : public httplib::TaskQueue {
 public:
  Pool(HttpServer& s)
      : server_(s),
        workers_(s.limits_.max_threads, s.threads_),
        rejecters_(2, nullptr),
        reactor_(kHeaderCap, s.limits_.header_timeout, [this](std::shared_ptr<HttpConnection> c) {
          workers_.enqueue([this, c = std::move(c)]() mutable { server_.serve(std::move(c)); });
        }) {}
  ~Pool() override { server_.pool_ = nullptr; }

  void enqueue(std::function<void()> fn) override {
    if (server_.open_->load() >= server_.limits_.max_connections) {
      rejecters_.enqueue([fn = std::move(fn)] {
        t_rejecting = true;
        fn();
        t_rejecting = false;
      });
      return;
    }
    ++*server_.open_;  // counted down when the connection closes (~HttpConnection)
    // Run here, on the listening thread: it only parks the connection (a worker takes it once
    // a request header is in), so a burst of silent connections starts no worker.
    t_accepting = true;
    fn();
    t_accepting = false;
  }
  // The reactor first (its connections close; it hands no more to the workers), then the
  // workers finish what they serve (a connection they park now is closed).
  void shutdown() override {
    reactor_.stop();
    workers_.shutdown();
    rejecters_.shutdown();
  }
  ConnectionReactor& reactor() { return reactor_; }

 private:
  HttpServer& server_;
  Workers workers_, rejecters_;
  ConnectionReactor reactor_;
};

int default_max_connections() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 16384;
  return int(std::clamp<rlim_t>(r.rlim_cur / 8 * 7, 64, 16384));
}

int raise_open_file_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  const rlim_t want = std::min<rlim_t>(r.rlim_max, 65536);
  if (r.rlim_cur < want) {
    r.rlim_cur = want;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) ::getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur == RLIM_INFINITY ? 65536 : int(std::min<rlim_t>(r.rlim_cur, 1 << 30));
}

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
  new_task_queue = [this] {
    auto* p = new Pool(*this);
    pool_ = p;
    return p;
  };
  // SO_REUSEADDR instead of httplib's SO_REUSEPORT: the accepted sockets inherit it, so the
  // TIME_WAIT they leave does not block a restart on the port (as uvicorn does); and a second
  // server on a live port is refused instead of sharing its connections.
  set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  set_keep_alive_max_count(std::max<size_t>(1, limits_.keep_alive_max_requests));
  set_keep_alive_timeout(std::max<time_t>(1, limits_.idle_timeout.count() / 1000));
}

HttpServer::~HttpServer() = default;

void HttpServer::widen_backlog(int n) {
  const auto sock = svr_sock_.load();
  if (sock != INVALID_SOCKET) ::listen(sock, n);
}

int HttpServer::worker_threads() const {
  return threads_->load();
}

int HttpServer::parked_connections() const {
  Pool* p = pool_.load();
  return p != nullptr ? p->reactor().parked() : 0;
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  if (t_rejecting && refused_silently(sock)) return false;
  auto c =
      std::make_shared<HttpConnection>(sock, limits_, svr_sock_, t_rejecting ? nullptr : open_);
  c->flags.rejected = t_rejecting;
  if (t_accepting) {
    if (Pool* p = pool_.load()) p->reactor().park(std::move(c));
    return true;
  }
  serve(std::move(c));
  return true;
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

void HttpServer::serve(std::shared_ptr<HttpConnection> c) {
  ConnectionFlags& flags = c->flags;
  t_flags = &flags;
  while (svr_sock_.load() != INVALID_SOCKET) {
    // No whole header buffered: the reactor holds the connection until one is (a connection
    // beyond the cap is answered at once, its header read here under its deadline).
    if (!flags.rejected && !c->stream.header_buffered(kHeaderCap)) {
      t_flags = nullptr;
      c->stream.shrink_if_empty();
      if (Pool* p = pool_.load()) p->reactor().park(std::move(c));
      return;  // not parked (stopping): closed with its last reference
    }
    c->stream.begin_request(c->header_due);
    const bool last = flags.rejected || c->served + 1 >= keep_alive_max_count_;
    flags.last_request = last;
    bool closed = false;
    const bool ok = process_request(c->stream, last, closed, [&](httplib::Request&) {
      c->stream.begin_body(Clock::now() + limits_.body_timeout);
    });
    ++c->served;
    if (!ok || closed || last || flags.close_after) break;
    // The next header is due from its first byte: now when it is already buffered (pipelined),
    // else when the reactor sees it come.
    c->idle_due = Clock::now() + limits_.idle_timeout;
    c->header_due = Clock::now() + limits_.header_timeout;
  }
  if (c->stream.header_cut_off()) {
    const char kTimeout[] =
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    c->stream.write(kTimeout, sizeof(kTimeout) - 1);
    flags.close_after = true;
  }
  t_flags = nullptr;
  c->close(flags.close_after || c->stream.buffered());
}

}  // namespace nc::server
