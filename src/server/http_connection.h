// One accepted HTTP connection, as it passes between the worker threads (which serve its
// requests) and the parking reactor (which holds it, without a thread, between them).
//
// ConnectionStream reads the socket through a buffer that lives as long as the connection, so
// the bytes of a pipelined request read ahead are kept, and so that the reactor can gather a
// request header trickled in over many reads before any worker sees it. Reads made by a worker
// wait under the current request's deadline (header, then body) and the per-recv timeout, and
// end within 100 ms once the server stops (the listening socket turns INVALID_SOCKET).
//
// HttpConnection is the socket, its stream and where the connection stands: requests served,
// when its accept was, when the current header and the idle wait are due. Destroying it closes
// the socket (if still open) and counts it out of the server's open connections, so a connection
// dropped anywhere (a stopped reactor, a job no worker ran) is never leaked.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <httplib.h>

#include "server/http_server.h"

namespace nc::server {

using ConnClock = std::chrono::steady_clock;

// Per connection; the worker serving it points t_flags of http_server.cc at it.
struct ConnectionFlags {
  bool rejected = false;      // beyond the connection cap: its one request gets 503
  bool close_after = false;   // close after the current response (close_connection_after)
  bool timed_out = false;     // the current request's deadline passed while reading it
  bool last_request = false;  // httplib writes "Connection: close" itself
};

class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(socket_t fd, const HttpLimits& limits, const std::atomic<socket_t>& listener,
                   ConnectionFlags& flags)
      : fd_(fd), limits_(limits), listener_(listener), flags_(flags) {}

  // The reads of a request's header from now on end by `deadline`.
  void begin_request(ConnClock::time_point deadline);
  void begin_body(ConnClock::time_point deadline);
  bool buffered() const { return pos_ < buf_.size(); }
  // The buffered bytes hold a whole request header (up to its blank line), or `cap` bytes of
  // one (too long a header is then the parser's to refuse).
  bool header_buffered(size_t cap) const;
  // Without blocking, appends what the socket holds now, up to `cap` buffered bytes: the bytes
  // read (> 0), 0 when the peer closed, -1 when nothing is there, -2 on an error.
  ssize_t fill_now(size_t cap);
  // Frees the buffer's memory when nothing is buffered (a parked idle connection holds none).
  void shrink_if_empty();
  // A request header started, was cut off by its deadline, and nothing was answered.
  bool header_cut_off() const { return in_header_ && got_bytes_ && deadline_hit_ && !wrote_; }

  bool is_readable() const override { return buffered() || wait_readable(); }
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

 private:
  bool wait_readable() const;  // within the per-recv timeout and the request's deadline
  void compact();              // drops the bytes already read

  socket_t fd_;
  const HttpLimits& limits_;
  const std::atomic<socket_t>& listener_;
  ConnectionFlags& flags_;
  ConnClock::time_point deadline_ = ConnClock::time_point::max();
  mutable bool deadline_hit_ = false;
  bool got_bytes_ = false, wrote_ = false, in_header_ = true;
  std::string buf_;
  size_t pos_ = 0;
};

class HttpConnection {
 public:
  // `open` (null for a connection beyond the cap) was counted up for this connection.
  HttpConnection(socket_t fd, const HttpLimits& limits, const std::atomic<socket_t>& listener,
                 std::shared_ptr<std::atomic<int>> open);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  socket_t fd() const { return fd_; }
  // When a parked connection is due: its header's deadline while bytes of one are buffered or
  // before its first request, else the end of its idle wait.
  ConnClock::time_point parked_deadline() const {
    return (stream.buffered() || served == 0) ? header_due : idle_due;
  }
  // Closes now; `gracefully`: shuts the write side and drains what the client still sends for
  // up to 200 ms first, so that it reads its response rather than a reset (blocks a worker).
  void close(bool gracefully);

  ConnectionFlags flags;
  ConnectionStream stream;
  const ConnClock::time_point accepted = ConnClock::now();
  ConnClock::time_point header_due, idle_due = ConnClock::time_point::max();
  size_t served = 0;

 private:
  socket_t fd_;
  std::shared_ptr<std::atomic<int>> open_;
};

}  // namespace nc::server
