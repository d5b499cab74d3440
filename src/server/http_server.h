// The HTTP front end under the routes: httplib::Server with nanocascade's connection handling.
//
// httplib 0.11 serves each connection with a fresh stream per request (so bytes of a pipelined
// request read ahead are lost), times reads out per recv (a header trickled one byte at a time
// is never cut off), holds a worker per idle keep-alive connection and starts every worker
// thread up front. HttpServer replaces its per-connection loop (process_and_close_socket is
// virtual; process_request, which parses and routes one request, is protected); httplib still
// parses and routes every request:
//   - one buffered stream per connection (http_connection.h), so pipelined requests are
//     answered in order;
//   - a worker serves a connection only while it has a request: a connection is parked as it is
//     accepted, and whenever it is idle between keep-alive requests or its header is still
//     trickling in, in a reactor (connection_reactor.h: one thread, epoll) that holds it without
//     a thread and hands it back to the workers, stream state included, once a whole request
//     header is buffered;
//   - deadlines per connection: the request header (from its first byte, or the accept), the
//     body (from the end of the header), the idle wait between keep-alive requests, each on top
//     of the per-recv read timeout; the reactor enforces them while a connection is parked; a
//     header cut off by its deadline gets 408 and a close;
//   - a handler may ask for the connection to close after its response
//     (close_connection_after(res)), e.g. when it refused a body it did not read;
//   - a worker pool that grows on demand up to max_threads, and a connection cap counting
//     parked connections too: connections beyond max_connections are served by a separate small
//     pool whose requests see connection_rejected() (the routes answer 503 and close);
//   - every wait for a client ends within 100 ms once the server stops.
// A connection is closed gracefully (write side shut, unread input drained for a moment), so
// that a client still sending a refused body reads its response rather than a reset.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <httplib.h>

namespace nc::server {

class HttpConnection;

struct HttpLimits {
  std::chrono::milliseconds read_timeout{30000};    // one stalled recv
  std::chrono::milliseconds write_timeout{30000};   // one stalled send
  std::chrono::milliseconds header_timeout{10000};  // the whole request line and header
  std::chrono::milliseconds body_timeout{60000};    // the whole body
  std::chrono::milliseconds idle_timeout{5000};     // between keep-alive requests
  size_t keep_alive_max_requests = 100;             // requests on one connection at most
  int max_threads = 64;                             // workers serving connections (grown on demand)
  int max_connections = 512;                        // open connections beyond get 503
};

// The default connection cap: 7/8 of the open-file limit (RLIMIT_NOFILE's soft value; the rest
// is kept for the model's files, the engine and the accepts answered 503), at most 16,384. An
// open connection costs a descriptor and a few hundred bytes, no thread (idle ones are parked).
int default_max_connections();
// Raises the soft open-file limit to the hard one (at most 65,536), as `serve` does at start,
// so that the default cap admits thousands of connections; returns the soft limit after.
int raise_open_file_limit();

// True while the current thread serves a connection beyond the connection cap.
bool connection_rejected();
// True when the current request's header or body deadline passed while it was read.
bool request_timed_out();
// The connection of the current request closes after `res` is written ("Connection: close").
void close_connection_after(httplib::Response& res);

// True when a listening socket could be bound to host:port now (SO_REUSEADDR, as httplib's).
bool can_bind(const std::string& host, int port);

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(HttpLimits limits);
  ~HttpServer() override;

  // Linux updates the backlog of a listener: httplib listens with a backlog of 5.
  void widen_backlog(int n);
  int open_connections() const { return open_->load(); }
  int worker_threads() const;      // started so far
  int parked_connections() const;  // held by the reactor now (idle, silent or trickling)
  const HttpLimits& limits() const { return limits_; }

 private:
  class Pool;
  bool process_and_close_socket(socket_t sock) override;
  // Serves the connection's buffered requests, then parks it or closes it.
  void serve(std::shared_ptr<HttpConnection> c);
  bool refused_silently(socket_t sock) const;

  HttpLimits limits_;
  std::shared_ptr<std::atomic<int>> open_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> threads_ = std::make_shared<std::atomic<int>>(0);
  std::atomic<Pool*> pool_{nullptr};  // the listening loop's, while it runs
};

}  // namespace nc::server
