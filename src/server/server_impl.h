// Private to the server's files: Server::Impl and the helpers its routes share. server.cc
// holds the generation handlers and Server's methods; server_routes.cc the routes, the checks
// made before a body is read, and the HTTP limits.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/anthropic_builder.h"
#include "server/anthropic_request.h"
#include "server/api_error.h"
#include "server/client_connection.h"
#include "server/engine_loop.h"
#include "server/http_checks.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/request_parser.h"
#include "server/response_builder.h"
#include "server/response_store.h"
#include "server/responses_builder.h"
#include "server/responses_request.h"
#include "server/server.h"

namespace nc::server {

using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

// Cancels the request when the handler leaves without having seen it finish.
class CancelGuard {
 public:
  explicit CancelGuard(std::shared_ptr<RequestHandle> h) : h_(std::move(h)) {}
  ~CancelGuard() {
    if (h_) h_->cancel();
  }
  void disarm() { h_.reset(); }

 private:
  std::shared_ptr<RequestHandle> h_;
};

std::string lower(std::string s);
std::string trim(const std::string& s);
void send_json(Response& res, int status, const json& j);
void send_ordered_json(Response& res, int status, const nlohmann::ordered_json& j);
void send_error(Response& res, const ApiError& e);
void send_anthropic_error(Response& res, const ApiError& e);
// The error in the shape of the API the request's path belongs to (Anthropic's for /v1/messages).
void send_error_for(const Request& req, Response& res, const ApiError& e);
// The error for statuses httplib produces itself (bad request line, oversized body, ...) and
// for routes that do not exist.
ApiError http_error(const Request& req, int status, size_t max_body);

struct Server::Impl {
  Engine& engine;
  ServerOptions opts;
  std::string model_name;
  ServerMetrics metrics;
  EngineLoop loop;
  ResponseStore responses;
  std::unique_ptr<HttpServer> http;
  CorsPolicy cors;
  std::thread listener;
  int port = -1;
  int64_t started_at = 0;
  bool started = false;
  bool stopped = false;

  Impl(Engine& e, ServerOptions o)
      : engine(e),
        opts(std::move(o)),
        model_name(opts.model_name.empty() ? default_model_name(e.config().model)
                                           : opts.model_name),
        loop(e, EngineLoopOptions{opts.max_waiting, opts.default_max_tokens}, metrics),
        responses(opts.responses_store_bytes) {}

  std::chrono::milliseconds poll() const {
    return std::chrono::milliseconds(std::max(1, opts.poll_interval_ms));
  }

  void setup_routes();
  void setup_checks();
  void send_unrouted(const Request& req, Response& res, const std::string& allow);  // 404/405
  HttpLimits limits() const;
  using BodyHandler = std::function<void(const std::string& body)>;
  // Reads a POST body within the cap, then hands it on (413/408/400 otherwise).
  void handle_post(const Request& req, Response& res, const httplib::ContentReader& read,
                   const BodyHandler& handle);
  bool authorized(const Request& req) const;
  void check_content_type(const Request& req) const;  // 415 unless JSON (or not said)
  void handle_generate(ApiKind kind, const Request& req, const std::string& body, Response& res);
  // POST /v1/responses (server/responses_request.h, server/responses_builder.h).
  void handle_responses(const Request& req, const std::string& body, Response& res);
  // POST /v1/messages and /v1/messages/count_tokens (server/anthropic_request.h); errors in
  // Anthropic's shape.
  void handle_anthropic(const Request& req, const std::string& body, Response& res);
  void handle_anthropic_count(const Request& req, const std::string& body, Response& res);
  // GET and DELETE /v1/responses/{id} (the store).
  void handle_stored_response(const Request& req, Response& res);
  // Submits the request and answers it, whole or streamed, with the builder made from its
  // Accepted event. Throws ApiError for what fails before the answer starts.
  using BuilderFactory = std::function<std::shared_ptr<OutputBuilder>(const StreamEvent&)>;
  void generate(ParsedRequest pr, const Request& req, Response& res,
                const BuilderFactory& make_builder);
  // 404 unless the model is the served one (or not named).
  void check_model(const std::string& model) const;
  // Structured output: tool_choice "required" / named becomes its grammar (in the model's call
  // format), and the request's grammar is compiled here, on the HTTP thread, so that the engine
  // thread finds it cached; one that does not compile (in time) is a 400 naming its field.
  void prepare_structured(ParsedRequest& pr) const;
  // A completions batch (server/completion_batch.h): every prompt submitted, then answered as one.
  void generate_batch(ParsedRequest pr, const Request& req, Response& res);
  void respond_whole(OutputBuilder& b, const std::shared_ptr<RequestHandle>& h, CancelGuard& guard,
                     ClientConnection& conn, Response& res);
  // Adds the request's events to b until it is done; false when the client left. Throws the
  // request's error, or its abort's.
  bool collect_whole(OutputBuilder& b, RequestHandle& h, CancelGuard& guard,
                     ClientConnection& conn);
  void respond_stream(const std::shared_ptr<OutputBuilder>& b,
                      const std::shared_ptr<RequestHandle>& h, CancelGuard& guard,
                      const Request& req, Response& res);
  // POST /tokenize and /detokenize (vLLM's shapes).
  void handle_tokenize(const std::string& body, Response& res);
  void handle_detokenize(const std::string& body, Response& res);
  bool wait_event(RequestHandle& h, ClientConnection& conn, StreamEvent& ev) const;
  json model_card() const;
};

}  // namespace nc::server
