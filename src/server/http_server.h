// The HTTP front end under the routes: httplib::Server with nanocascade's connection handling.
//
// httplib 0.11 serves each connection with a fresh stream per request (so bytes of a pipelined
// request read ahead are lost), times reads out per recv (a header trickled one byte at a time
// is never cut off), holds a worker per idle keep-alive connection and starts every worker
// thread up front. HttpServer replaces its per-connection loop (process_and_close_socket is
// virtual; process_request, which parses and routes one request, is protected):
//   - one buffered stream per connection, so pipelined requests are answered in order;
//   - deadlines per connection: the request header (from its first byte, or the accept), the
//     body (from the end of the header), the idle wait between keep-alive requests, each on top
//     of the per-recv read timeout; a header cut off by its deadline gets 408 and a close;
//   - a handler may ask for the connection to close after its response
//     (close_connection_after(res)), e.g. when it refused a body it did not read;
//   - a worker pool that grows on demand up to max_threads, and a connection cap: connections
//     beyond max_connections are served by a separate small pool whose requests see
//     connection_rejected() (the routes answer 503 and close);
//   - an idle keep-alive connection, or one silent since its accept, gives its worker up (is
//     closed) at once when connections wait for one and no more workers may start;
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
  int worker_threads() const;  // started so far
  const HttpLimits& limits() const { return limits_; }

 private:
  class Pool;
  bool process_and_close_socket(socket_t sock) override;
  bool serve_connection(socket_t sock);
  bool wait_for_request(socket_t sock, size_t served) const;
  bool refused_silently(socket_t sock) const;
  // Connections wait for a worker and no more workers may start.
  bool workers_starved() const;

  HttpLimits limits_;
  std::shared_ptr<std::atomic<int>> open_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> waiting_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> threads_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace nc::server
