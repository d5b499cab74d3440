// nanocascade's OpenAI-compatible HTTP server (cpp-httplib): POST /v1/chat/completions,
// POST /v1/completions (both with SSE streaming), GET /v1/models, GET /health, GET /metrics,
// POST /tokenize and /detokenize (vLLM's).
// Connections, deadlines and limits are http_server.h's; framing checks and CORS http_checks.h's.
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
  int default_max_tokens = 0;  // 0 = the API's: 16 for completions, the context for chat
  int max_n = 16;              // n and best_of at most (larger: 400)
  // Responses kept for previous_response_id and GET /v1/responses/{id}, in memory, least
  // recently used dropped first (server/response_store.h); 0 keeps none.
  size_t responses_store_bytes = size_t(64) << 20;
  // Worker threads, started as requests come (connections between requests hold none): 0 =
  // max_num_seqs + max_waiting + 16 (one per request the engine admits, and some for /health and
  // the like), at most max_connections.
  int http_threads = 0;
  // Open connections at most, idle ones included (they hold no thread); more get 503 and are
  // closed. 0 = default_max_connections(): 7/8 of the open-file limit, at most 16,384.
  int max_connections = 0;
  int read_timeout_s = 30;       // one stalled recv of a request
  int write_timeout_s = 30;      // a client that stops reading its response
  int header_timeout_s = 10;     // the whole request line and header (a trickled header is cut off)
  int body_timeout_s = 60;       // the whole request body
  int keep_alive_timeout_s = 5;  // idle between requests on a connection
  std::string allowed_origins;   // CORS: comma list of origins or "*"; empty = off
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
  // Throws nc::Error when host:port cannot be bound now (a port in use): `serve` asks before it
  // loads the model. Port 0 always passes.
  static void check_can_bind(const std::string& host, int port);
  // Fails what is in flight (503), stops accepting and joins every thread. Idempotent.
  void stop();

  int port() const;                  // the bound port (after start)
  int http_threads_started() const;  // worker threads started so far (they start on demand)
  int parked_connections() const;    // open connections held without a thread (idle, slow)
  const std::string& model_name() const;
  EngineLoop& loop();
  ServerMetrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nc::server
