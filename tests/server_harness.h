// The server tests' harness (tests/test_server_*.cc): a real server on a loopback port in the
// test process over an engine on the fake token-level model (tests/fake_model.h), httplib's
// client, and the references the tests compare with: a request's outputs when run alone on a fresh
// engine of the same setup, and the events of an SSE body. The engine's codec decodes every id to a
// printable ASCII character, so outputs compare byte for byte through JSON; with
// EngineSetup::raising_codec a prompt "raise:<kind>" makes encoding throw an nc::Error of that
// kind. Definitions in tests/server_harness.cc (compiled once for all the server tests).
#pragma once
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_model.h"
#include "loopback.h"
#include "nanocascade/engine.h"
#include "server/engine_loop.h"
#include "server/server.h"

namespace nc::test_server {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using test::connect_loopback;

constexpr int kVocab = 300;
constexpr const char* kModel = "fake-model";

struct EngineSetup {
  int max_pos = 4096;
  int max_num_seqs = 256;
  int max_model_len = 0;
  int pages = 8192;
  int page_size = 16;
  bool raising_codec = false;     // RaisingCodec instead of AsciiCodec
  double grammar_timeout_s = 30;  // EngineConfig::grammar_compile_timeout_s
};

// An engine over the fake model; with delay_us, each forward first sleeps that many microseconds
// (read at each step), so that requests overlap (streams last, clients can leave).
std::unique_ptr<Engine> make_engine(const EngineSetup& s,
                                    std::shared_ptr<std::atomic<int>> delay_us = nullptr);

// A server on a free loopback port over its own engine.
struct TestServer {
  std::shared_ptr<std::atomic<int>> delay_us = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;

  explicit TestServer(EngineSetup es = {}, server::ServerOptions opts = {}, int delay = 0) {
    delay_us->store(delay);
    engine = make_engine(es, delay_us);
    opts.port = 0;
    opts.poll_interval_ms = 10;
    srv = std::make_unique<server::Server>(*engine, opts);
    srv->start();
  }
  ~TestServer() { srv->stop(); }

  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", srv->port());
    c->set_read_timeout(60, 0);
    c->set_write_timeout(60, 0);
    c->set_connection_timeout(10, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {},
                       const std::string& ct = "application/json") const {
    return client()->Post(path.c_str(), headers, body, ct.c_str());
  }
  httplib::Result post(const std::string& path, const json& body) const {
    return post(path, body.dump());
  }
  EngineStats stats() const { return srv->loop().stats(); }

  // Waits until no request is in flight and every page is free (bounded).
  bool wait_idle(double timeout_s = 20) const {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < deadline) {
      const EngineStats s = stats();
      if (srv->loop().num_in_flight() == 0 && s.used_pages == 0 && s.num_running == 0 &&
          s.num_waiting == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
};

// What a request gives when run alone on a fresh engine.
struct Alone {
  std::string text;
  std::vector<int32_t> token_ids;
  std::string finish_reason;
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

Alone run_alone(const std::function<RequestId(Engine&)>& add, const EngineSetup& es = {});
Alone complete_alone(const std::string& prompt, const SamplingParams& sp,
                     const EngineSetup& es = {});
Alone chat_alone(const std::vector<ChatMessage>& msgs, const SamplingParams& sp);
SamplingParams greedy(int max_tokens);

// The events of an SSE body: parsed JSON payloads, and whether [DONE] came last.
struct SseBody {
  std::vector<json> events;
  bool done = false;
  bool ok = true;
};
SseBody parse_sse(const std::string& body);

// The text, finish reason and usage a stream carries.
struct Streamed {
  std::string text, finish_reason;
  json stop_reason;  // vLLM's, from the chunk that carries the finish_reason
  json usage;
  int role_chunks = 0;
};

Streamed collect(const SseBody& sse, bool chat);

// The response is an OpenAI error object with HTTP status `status` (`what` names the case).
void expect_openai_error(const httplib::Result& r, int status, const std::string& what);
json chat_body(const std::string& content, int max_tokens, bool stream = false);
json completion_body(const std::string& prompt, int max_tokens, bool stream = false);

// A streaming POST that hands each received piece to `on_data` (return false to hang up).
httplib::Result post_stream(const TestServer& ts, const std::string& path, const json& body,
                            std::function<bool(const char*, size_t)> on_data);

// One streaming client of a load test: what it received and when.
struct ClientRun {
  int status = 0;
  std::string text, finish_reason;
  int completion_tokens = -1;
  double ttft_s = 0, e2e_s = 0;
};

// Runs every body as a streaming completion from its own thread, all at once.
std::vector<ClientRun> run_streaming_clients(int port, const std::vector<json>& bodies);
// Prints throughput and first-byte / end-to-end latency percentiles of a load run.
void print_load(const char* tag, const std::vector<ClientRun>& runs, double wall_s);

}  // namespace nc::test_server
