// The parking reactor: one thread with epoll that holds the connections that have no request
// to serve, so that an idle or slow client costs a socket and a few hundred bytes, never a
// worker thread.
//
// A worker parks a connection when its buffer holds no whole request header: one idle between
// keep-alive requests, one silent since its accept, one whose header trickles in. The reactor
// reads what comes (without blocking) into the connection's own buffer; once a whole header
// is buffered (or `header_cap` bytes of one) the connection leaves the reactor through `ready`,
// which hands it back to the workers with its stream state, bytes read ahead included.
//
// Deadlines are the reactor's while a connection is parked (HttpConnection::parked_deadline):
// an idle connection past its idle deadline, or one that sent nothing by its header deadline,
// is closed; a header begun and not finished by its deadline gets "408 Request Timeout", then
// the write side is shut and what the client still sends is drained for up to 200 ms before
// the close (so it reads the 408 rather than a reset), all without blocking. A peer that closes
// is closed at once, unless it sent a whole request first (that one is still answered).
//
// stop() wakes the thread at once, closes every parked connection and joins it; a connection
// parked after stop() is closed by the caller's drop of it. Thread-safe: park() from any thread;
// `ready` runs on the reactor's thread and must not block.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/http_connection.h"

namespace nc::server {

class ConnectionReactor {
 public:
  using Ready = std::function<void(std::shared_ptr<HttpConnection>)>;

  // `header_timeout` is the deadline of a header whose first byte comes while parked after a
  // request was served (the first request's header is due from the accept).
  ConnectionReactor(size_t header_cap, std::chrono::milliseconds header_timeout, Ready ready);
  ~ConnectionReactor();
  ConnectionReactor(const ConnectionReactor&) = delete;
  ConnectionReactor& operator=(const ConnectionReactor&) = delete;

  // Holds `c` until a request header is buffered, its deadline passes, the peer closes or stop.
  // After stop() the connection is dropped (closed when its last reference goes).
  void park(std::shared_ptr<HttpConnection> c);
  void stop();
  int parked() const { return parked_count_.load(); }

 private:
  struct Entry {
    std::shared_ptr<HttpConnection> conn;
    ConnClock::time_point deadline;
    bool draining = false;  // 408 sent, write side shut: reading what is left before the close
  };

  void run();
  void take_incoming();
  void add(std::shared_ptr<HttpConnection> c);
  void on_readable(int fd);
  void read_request(int fd, Entry& e);
  void expire(ConnClock::time_point now);
  void set_deadline(int fd, Entry& e, ConnClock::time_point deadline);
  std::shared_ptr<HttpConnection> remove(int fd);  // leaves epoll, the map and the deadlines
  int wait_ms() const;

  const size_t header_cap_;
  const std::chrono::milliseconds header_timeout_;
  Ready ready_;
  int epfd_ = -1, wakefd_ = -1;
  std::mutex mu_;  // guards incoming_ and stopping_
  std::vector<std::shared_ptr<HttpConnection>> incoming_;
  bool stopping_ = false;
  std::atomic<int> parked_count_{0};
  // The reactor thread's own.
  std::unordered_map<int, Entry> parked_;
  std::set<std::pair<ConnClock::time_point, int>> deadlines_;
  std::thread thread_;
};

}  // namespace nc::server
