// nanocascade's OpenAI-compatible HTTP server (cpp-httplib): POST /v1/chat/completions,
// POST /v1/completions (both with SSE streaming), GET /v1/models, GET /health, GET /metrics.
// See docs/server.md.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "nanocascade/engine.h"

namespace nc::server {

class EngineLoop;
class ServerMetrics;

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless asked
  int port = 8000;                 // 0 = any free port (see Server::port())
  std::string api_key;             // when set, /v1/* needs "Authorization: Bearer <key>"
  std::string model_name;          // the id clients send as "model"; empty = from the model path
  size_t max_body_bytes = size_t(4) << 20;  // larger bodies get 413
  int max_waiting = 128;                    // see EngineLoopOptions
  int default_max_tokens = 0;               // 0 = the rest of the context
  int http_threads = 0;                     // 0 = enough for every admitted request + 16
  int read_timeout_s = 30;                  // a client that stalls sending its request
  int write_timeout_s = 30;                 // a client that stops reading its response
  int keep_alive_timeout_s = 5;
  int poll_interval_ms = 50;  // how often a waiting handler checks that its client is still there
};

// The model id served when ServerOptions::model_name is empty: the model file's or folder's
// name without ".gguf" ("SmolLM2-135M-Instruct.Q4_1" for the embedded default).
std::string default_model_name(const std::string& model_path);

class Server {
 public:
  // The engine must outlive the server; only the server's engine thread touches it.
  Server(Engine& engine, ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving on background threads. Throws nc::Error when it cannot bind.
  void start();
  // Fails what is in flight (503), stops accepting and joins every thread. Idempotent.
  void stop();

  int port() const;  // the bound port (after start)
  const std::string& model_name() const;
  EngineLoop& loop();
  ServerMetrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nc::server
