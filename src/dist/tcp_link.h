// TCP for tensor parallelism's processes (issue #21): the ranks of a group that are separate
// processes, on one machine or several, reach rank 0 at one address (`--dist-init-addr
// host:port`, as vLLM and SGLang name it). dist/socket_group.h runs collectives over these links;
// the NCCL communicator uses them only to hand out NCCL's unique id and each step's plan.
//
// Contract:
//   - Every send and receive is whole (a short read is retried) and bounded by a deadline: past
//     it, an nc::Error names what was being sent or received and how long it waited. A peer that
//     closed its end (its process died) is an error at once, naming the peer.
//   - A deadline of Deadline::never() waits without bound (a worker idle between steps), still
//     failing at once when the peer goes away.
//   - connect() retries a refused connection until its deadline: the ranks start in any order.
//   - Sockets are non-blocking: a send into a full buffer waits in poll(), under the deadline,
//     never inside send().
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace nc {

struct HostPort {
  std::string host;
  int port = 0;
};

// "host:port" (host a name or an IPv4 address; port 1..65535); errors name the text.
HostPort parse_host_port(const std::string& text);

class Deadline {
 public:
  static Deadline after(std::chrono::milliseconds d) {
    return Deadline(std::chrono::steady_clock::now() + d);
  }
  static Deadline never() { return Deadline(std::chrono::steady_clock::time_point::max()); }
  bool unbounded() const { return at_ == std::chrono::steady_clock::time_point::max(); }
  // Milliseconds left for poll(): -1 when unbounded, 0 once past.
  int poll_ms() const;

 private:
  explicit Deadline(std::chrono::steady_clock::time_point at) : at_(at) {}
  std::chrono::steady_clock::time_point at_;
};

// One connected stream socket; closes it when destroyed.
class TcpLink {
 public:
  TcpLink(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~TcpLink();
  TcpLink(const TcpLink&) = delete;
  TcpLink& operator=(const TcpLink&) = delete;

  void send(const void* data, size_t bytes, Deadline deadline, const char* what);
  void recv(void* data, size_t bytes, Deadline deadline, const char* what);
  // Whether a receive would not block now (data, or the peer's end of the connection).
  bool readable() const;
  const std::string& peer() const { return peer_; }
  void set_peer(std::string peer) { peer_ = std::move(peer); }

 private:
  void wait(short events, Deadline deadline, const char* what, size_t done, size_t bytes);
  int fd_;
  std::string peer_;  // for errors: "rank 2" once known, the address before
};

class TcpListener {
 public:
  // Binds host:port (port 0: a free port, see port()) and listens.
  explicit TcpListener(const HostPort& at);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  int port() const { return port_; }
  std::unique_ptr<TcpLink> accept(Deadline deadline);

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::unique_ptr<TcpLink> tcp_connect(const HostPort& to, Deadline deadline);

// "127.0.0.1:<port>" with a port free now (for a group on one machine: rank 0 binds it at once).
std::string free_local_address();

}  // namespace nc
