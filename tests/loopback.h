// Loopback helpers for the server tests: a raw TCP connection to 127.0.0.1 (for what httplib's
// client will not send) and a server over the fake token-level model (tests/fake_model.h), whose
// answers are immediate, so the times measured are the front end's.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "fake_model.h"
#include "nanocascade/engine.h"
#include "server/server.h"

namespace nc::test {

// A TCP connection to 127.0.0.1:port, or -1; `rcvbuf` > 0 shrinks its receive buffer first.
inline int connect_loopback(int port, int rcvbuf = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends all of s, or returns false (no SIGPIPE when the server has closed).
inline bool send_all(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size());
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A started server on an ephemeral port over the fake model (300 ids, 1024 positions), with a
// small engine (4 sequences, 512 tokens a step, 8 pages per sequence); stopped when destroyed.
struct FakeModelServer {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;

  explicit FakeModelServer(server::ServerOptions opts = {}) {
    EngineConfig cfg;
    cfg.model = "/models/fake-model.gguf";
    cfg.page_size = 16;
    cfg.max_num_seqs = 4;
    cfg.max_num_batched_tokens = 512;
    cfg.kv_cache_memory = std::to_string(int64_t(512) * 16 * 8);
    engine = std::make_unique<Engine>(cfg, std::make_unique<fake::FakeModel>(300, 1024),
                                      std::make_unique<fake::FakeCodec>());
    opts.port = 0;
    opts.poll_interval_ms = 10;
    srv = std::make_unique<server::Server>(*engine, opts);
    srv->start();
  }
  ~FakeModelServer() { srv->stop(); }
  int port() const { return srv->port(); }
};

}  // namespace nc::test
