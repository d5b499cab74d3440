// nanocascade serve: loads the engine, serves HTTP until SIGINT or SIGTERM.
#include "cli/cmd_serve.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <memory>

#include "cli/cli_common.h"
#include "cli/tp_ranks.h"
#include "core/error.h"
#include "server/http_checks.h"
#include "server/http_server.h"
#include "server/server.h"

namespace nc::cli {
namespace {

struct ServeArgs {
  EngineFlags engine;
  server::ServerOptions server;
  uint64_t seed = 0;
};

// SIGINT/SIGTERM write a byte to this pipe; the main thread waits on it. (Blocking the signals
// and sigwait-ing is not enough: OpenBLAS starts threads before main, with the default mask.)
int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const char c = char(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_stop_pipe[1], &c, 1);
}

int wait_for_stop_signal() {
  char c = 0;
  while (::read(g_stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  return c;
}

void install_stop_handlers() {
  NC_CHECK(::pipe(g_stop_pipe) == 0, "serve: cannot create a pipe");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void run_serve(const ServeArgs& a) {
  TensorParallelRanks ranks(a.engine);  // on node_rank > 0: serves its ranks, no server
  if (ranks.served()) return;
  install_stop_handlers();
  // What can fail at once fails before the model loads: the bind, the CORS origins.
  server::Server::check_can_bind(a.server.host, a.server.port);
  (void)server::CorsPolicy(a.server.allowed_origins);
  // Idle connections cost a descriptor each, no thread: the default cap follows the fd limit.
  server::raise_open_file_limit();
  const auto trace = a.engine.open_memory_trace();
  EngineConfig cfg = ranks.config();
  cfg.seed = a.seed;
  Engine engine(cfg);
  attach_memory_trace(engine, trace);
  server::Server srv(engine, a.server);
  srv.start();
  const EngineStats st = engine.stats();
  fmt::print(stderr,
             "nanocascade serve: model '{}' on http://{}:{} (context {} tokens, {} KV pages of {} "
             "tokens){}\n",
             srv.model_name(), a.server.host, srv.port(), st.max_model_len, st.total_pages,
             st.page_size, a.server.api_key.empty() ? "" : ", API key required");
  if (a.server.host != "127.0.0.1" && a.server.host != "localhost" && a.server.host != "::1" &&
      a.server.api_key.empty()) {
    fmt::print(stderr,
               "nanocascade serve: warning: listening on {} without --api-key: anyone who can "
               "reach this port can use the model\n",
               a.server.host);
  }
  const int sig = wait_for_stop_signal();
  fmt::print(stderr, "nanocascade serve: {}, shutting down\n",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
  srv.stop();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (docs/server.md)");
  args->engine.add_to(*cmd);
  server::ServerOptions& o = args->server;
  cmd->add_option("--host", o.host, "address to listen on (0.0.0.0 exposes the server)")
      ->capture_default_str();
  cmd->add_option("--port", o.port, "TCP port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--api-key", o.api_key,
                  "require 'Authorization: Bearer KEY' on /v1/* (default: $NANOCASCADE_API_KEY)")
      ->envname("NANOCASCADE_API_KEY");
  cmd->add_option("--served-model-name", o.model_name,
                  "the model id clients send (default: the model file's name)");
  cmd->add_option("--max-body-bytes", o.max_body_bytes,
                  "larger request bodies get 413, whatever their framing (Content-Length, "
                  "chunked)")
      ->check(kPositiveSize)
      ->capture_default_str();
  cmd->add_option("--max-waiting", o.max_waiting,
                  "requests that may wait beyond --max-num-seqs; more get 429")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  cmd->add_option("--max-n", o.max_n,
                  "the most choices one request may ask for (n, best_of); more get 400")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option_function<size_t>(
         "--responses-store-mb", [&o](size_t mb) { o.responses_store_bytes = mb << 20; },
         "MiB of memory for stored Responses API answers (previous_response_id, GET "
         "/v1/responses/{id}), least recently used dropped first; 0 stores none [64]")
      ->check(CLI::Range(size_t(0), size_t(1) << 20));
  cmd->add_option("--default-max-tokens", o.default_max_tokens,
                  "max_tokens when a request gives none (0: the API's default, 16 for completions, "
                  "the rest of the context for chat)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  cmd->add_option("--http-threads", o.http_threads,
                  "most HTTP worker threads, started as requests come (0: max-num-seqs + "
                  "max-waiting + 16, one per request the engine admits and 16 for /health and "
                  "the like, at most --max-connections)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  cmd->add_option("--max-connections", o.max_connections,
                  "open connections at most, idle ones included; more get 503 and are closed "
                  "(0: 7/8 of the open-file limit, which serve raises to its hard limit, at most "
                  "16384; an idle or slow connection holds no thread, only a descriptor)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  cmd->add_option("--read-timeout", o.read_timeout_s, "seconds one read of a request may stall")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option("--header-timeout", o.header_timeout_s,
                  "seconds for a whole request header, however it trickles in (then 408)")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option("--body-timeout", o.body_timeout_s, "seconds for a whole request body")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option("--keep-alive-timeout", o.keep_alive_timeout_s,
                  "seconds a connection may idle between requests")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option("--write-timeout", o.write_timeout_s, "seconds a client may stall reading")
      ->check(kPositiveInt)
      ->capture_default_str();
  cmd->add_option("--allowed-origins", o.allowed_origins,
                  "CORS: origins allowed to call the API from a browser, a comma list or '*' "
                  "(default: none, CORS off)");
  cmd->add_option("--seed", args->seed, "engine seed for requests that give none")
      ->capture_default_str();
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace nc::cli
