// The engine front for the HTTP server: one thread owns the Engine and runs step() in a loop;
// HTTP handler threads submit requests and read their outputs from a per-request channel.
//
//   handler thread                         engine thread
//   submit(req) ──> pending queue ──────>  tokenize, add_request ──> Accepted | Error
//   handle->next(ev) <── channel <───────  step() outputs, routed by request id
//   handle->cancel()  ──> flag ──────────>  engine.abort(id): its pages return at once
//
// The Engine is touched by the engine thread only (it is not thread-safe); statistics are
// published as a snapshot after every step.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "nanocascade/engine.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/request_parser.h"
#include "server/tool_calls.h"

namespace nc::server {

// max_tokens of a /v1/completions request that gives none (the OpenAI reference's default).
inline constexpr int kCompletionsDefaultMaxTokens = 16;

// A chat's prompt as a chat request renders it: with tools, tool turns or template kwargs
// (tools.active) through the model's Jinja template, call ids fitted to its tool format;
// otherwise Engine::chat_prompt. ending: add_generation_prompt and continue_final_message (its
// template kwargs are the request's). format: the tool format and reasoning state the prompt
// implies (forced_calls left false).
ChatPrompt render_chat(const Engine& engine, const std::vector<ChatMessage>& messages,
                       const ToolRequest& tools, ChatPromptOptions ending, OutputFormat& format);

class EngineLoop;

struct StreamEvent {
  enum class Kind : uint8_t { Accepted, Output, Error };
  Kind kind = Kind::Output;
  int num_prompt_tokens = 0;  // Accepted
  std::string prompt_text;    // Accepted, completions: the prompt as text (echo, text offsets)
  LogprobToken prompt_first;  // Accepted, echo: the first prompt token (no log-probability)
  OutputFormat format;        // Accepted, chat: how to read the output (server/tool_calls.h)
  int choice = 0;             // Output: the choice (0 .. best_of - 1) it belongs to
  RequestOutput output;       // Output
  // Output, decoded on the engine thread: the log-probabilities of output.new_token_ids (when
  // asked), and of the prompt's tokens after the first (echo with logprobs).
  std::vector<LogprobToken> logprobs;
  std::vector<LogprobToken> prompt_logprobs;
  std::optional<ApiError> error;  // Error
};

// One request's channel. The handler thread reads it; the engine thread writes it.
class RequestHandle {
 public:
  RequestHandle(EngineLoop& loop, ParsedRequest req, std::string session_id);

  // The next event, waiting at most `timeout`; false on timeout.
  bool next(StreamEvent& ev, std::chrono::milliseconds timeout);
  // Aborts the request (the client went away). Idempotent; harmless after it finished.
  void cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class EngineLoop;
  void push(StreamEvent ev);

  EngineLoop& loop_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  std::atomic<bool> cancelled_{false};

  // Engine thread only.
  ParsedRequest req_;
  std::string session_id_;
  std::chrono::steady_clock::time_point arrival_;
  std::vector<RequestId> ids_;  // one engine request per choice (best_of of them)
  int unfinished_ = 0;          // choices not finished yet
  bool abort_sent_ = false;
};

struct EngineLoopOptions {
  // Requests beyond those the engine runs (max_num_seqs) that may wait; beyond, submit() throws
  // 429. So at most max_num_seqs + max_waiting requests are in flight.
  int max_waiting = 128;
  // When a request gives no max_tokens, it may generate up to the rest of the context; a
  // positive value caps that default.
  int default_max_tokens = 0;
};

// The engine's log-probabilities as the API writes them: each token decoded on its own.
LogprobToken render_logprob(const Engine& engine, const TokenLogprob& t);

class EngineLoop {
 public:
  EngineLoop(Engine& engine, EngineLoopOptions opts, ServerMetrics& metrics);
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  void start();
  // Fails every pending and running request (503), returns their pages and joins the thread.
  void stop();

  // Queues a request; its first event is Accepted (with the prompt's token count) or Error.
  // Throws ApiError 429 when the waiting queue is full, 503 when stopped.
  std::shared_ptr<RequestHandle> submit(ParsedRequest req, std::string session_id);

  EngineStats stats() const;  // as of the last step
  int num_in_flight() const { return in_flight_.load(); }
  bool healthy() const { return healthy_.load(); }
  int max_in_flight() const { return max_in_flight_; }

 private:
  friend class RequestHandle;
  void wake();
  void run();
  void admit(const std::shared_ptr<RequestHandle>& h);
  // The prompt's ids; for chat, format says how to read the output (from the rendered prompt).
  std::vector<int32_t> tokenize(const ParsedRequest& req, OutputFormat& format) const;
  // The request's sampling parameters for the engine: without max_tokens, the rest of the
  // context, capped by default_max_tokens, else for completions by 16.
  SamplingParams engine_sampling(const ParsedRequest& req, int num_prompt) const;
  // The request field a ContextLength error of the engine names: the prompt (or messages) when
  // the prompt alone fills the context, else max_tokens. (The engine knows no JSON names.)
  std::string context_param(const ParsedRequest& req, int num_prompt) const;
  // The request field an engine error names (context_param, or stop_token_ids), "" for none.
  std::string error_param(const ParsedRequest& req, const Error& e, int num_prompt) const;
  void step_once();
  void check_idle_health();
  void fail_all(const ApiError& e);
  void release(RequestHandle& h);  // one request fewer in flight
  void publish_stats();
  void route(RequestOutput& o);

  Engine& engine_;
  EngineLoopOptions opts_;
  ServerMetrics& metrics_;
  int max_in_flight_ = 0;
  int max_model_len_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<RequestHandle>> pending_;
  bool stop_ = false;
  bool wake_ = false;
  bool running_ = false;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> healthy_{true};
  std::thread thread_;

  // Engine thread only.
  struct Active {
    std::shared_ptr<RequestHandle> handle;
    int choice = 0;
  };
  std::map<RequestId, Active> active_;

  mutable std::mutex stats_mu_;
  EngineStats stats_;
};

}  // namespace nc::server
