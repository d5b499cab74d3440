// The client connection behind a request.
//
// httplib 0.11 does not tell a handler whether its client is still connected. A handler that
// waits for tokens needs to know, so that a client that went away aborts its request and its KV
// pages return at once. The connection's socket is found by its addresses (the only socket of
// this process whose local port is the server's and whose peer is the request's remote
// address); it stays ours while the handler runs, since httplib closes it only afterwards.
#pragma once
#include <chrono>
#include <string>

#include <httplib.h>

namespace nc::server {

class ClientConnection {
 public:
  explicit ClientConnection(const httplib::Request& req)
      : remote_addr_(req.remote_addr), remote_port_(req.remote_port), local_port_(req.local_port) {}

  // True when the peer closed or reset the connection. A client that half-closes its side
  // after sending the request counts as gone (HTTP clients do not do that). Looks at the socket
  // at most once per `every` (a few syscalls; tokens may arrive far more often).
  bool closed_every(std::chrono::milliseconds every);
  // closed_every without the rate limit. A socket that cannot be found counts as connected.
  bool closed();

 private:
  int find_socket() const;

  std::string remote_addr_;
  int remote_port_ = -1, local_port_ = -1;
  int fd_ = -2;  // -2: not looked up yet; -1: not found
  std::chrono::steady_clock::time_point last_check_ = std::chrono::steady_clock::now();
};

}  // namespace nc::server
