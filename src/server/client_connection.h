// The client connection behind a request.
//
// httplib 0.11 does not tell a handler whether its client is still connected. A handler that
// waits for tokens needs to know, so that a client that went away aborts its request and its KV
// pages return at once. The connection's socket is found by its addresses (the only socket of
// this process whose local port is the server's and whose peer is the request's remote
// address); it stays ours while the handler runs, since httplib closes it only afterwards. A
// client that reset its connection before the first look has no peer address any more: when no
// connected socket has our peer and some connection on the server's port has none, ours is it.
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
  static constexpr int kNotLookedUp = -2, kNotFound = -1, kGone = -3;
  // The socket's fd; kGone when the connection lost its peer before the look (a reset);
  // kNotFound when no socket matches.
  int find_socket() const;

  std::string remote_addr_;
  int remote_port_ = -1, local_port_ = -1;
  int fd_ = kNotLookedUp;  // else find_socket()'s answer
  std::chrono::steady_clock::time_point last_check_ = std::chrono::steady_clock::now();
};

}  // namespace nc::server
