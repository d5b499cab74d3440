#include "server/server.h"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "core/error.h"
#include "server/api_error.h"
#include "server/client_connection.h"
#include "server/engine_loop.h"
#include "server/http_checks.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/request_parser.h"

namespace nc::server {

namespace {

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

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Comparison in time independent of where the strings differ (the key must not leak).
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= unsigned(uint8_t(a[i]) ^ uint8_t(b[i]));
  return diff == 0;
}

void send_json(Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void send_error(Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_body(e), "application/json");
}

// The error for statuses httplib produces itself (bad request line, oversized body, ...) and
// for routes that do not exist.
ApiError http_error(const Request& req, int status, size_t max_body) {
  switch (status) {
    case 404:
      return ApiError(404, fmt::format("unknown route: {} {}", req.method, req.path),
                      "invalid_request_error", "", "unknown_url");
    case 413:
      return ApiError(413, fmt::format("the request body exceeds the limit of {} bytes", max_body),
                      "invalid_request_error", "", "request_too_large");
    case 400:
      return ApiError(400, "malformed HTTP request", "invalid_request_error");
    case 408:
      return ApiError(408, "the request was not received within its deadline",
                      "invalid_request_error", "", "request_timeout");
    case 414:
      return ApiError(414, "the request URI is too long", "invalid_request_error");
    default:
      return ApiError(status, fmt::format("HTTP error {}", status),
                      status >= 500 ? "server_error" : "invalid_request_error");
  }
}

// The method a known route takes ("" for an unknown route).
std::string allowed_method(const std::string& path) {
  if (path == "/v1/chat/completions" || path == "/v1/completions") return "POST";
  if (path == "/v1/models" || path.starts_with("/v1/models/") || path == "/health" ||
      path == "/metrics") {
    return "GET";
  }
  return "";
}

}  // namespace

std::string default_model_name(const std::string& model_path) {
  std::filesystem::path p(model_path.empty() ? EngineConfig::default_model_path() : model_path);
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  std::string name = p.filename().string();
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name.empty() ? p.string() : name;
}

struct Server::Impl {
  Engine& engine;
  ServerOptions opts;
  std::string model_name;
  ServerMetrics metrics;
  EngineLoop loop;
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
        loop(e, EngineLoopOptions{opts.max_waiting, opts.default_max_tokens}, metrics) {}

  std::chrono::milliseconds poll() const {
    return std::chrono::milliseconds(std::max(1, opts.poll_interval_ms));
  }

  void setup_routes();
  void setup_checks();
  HttpLimits limits() const;
  void handle_post(ApiKind kind, const Request& req, Response& res,
                   const httplib::ContentReader& read);
  bool authorized(const Request& req) const;
  void handle_generate(ApiKind kind, const Request& req, const std::string& body,
                       Response& res);
  void respond_whole(ApiKind kind, const std::shared_ptr<RequestHandle>& h, CancelGuard& guard,
                     ClientConnection& conn, int prompt_tokens, Response& res);
  void respond_stream(const ParsedRequest& pr, const std::shared_ptr<RequestHandle>& h,
                      CancelGuard& guard, const Request& req, Response& res);
  bool wait_event(RequestHandle& h, ClientConnection& conn, StreamEvent& ev) const;
  json model_card() const;
};

bool Server::Impl::authorized(const Request& req) const {
  if (opts.api_key.empty()) return true;
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (auth.size() < prefix.size() || lower(auth.substr(0, prefix.size())) != "bearer ")
    return false;
  return same_secret(trim(auth.substr(prefix.size())), opts.api_key);
}

bool Server::Impl::wait_event(RequestHandle& h, ClientConnection& conn, StreamEvent& ev) const {
  for (;;) {
    const bool got = h.next(ev, poll());
    if (conn.closed_every(poll())) return false;
    if (got) return true;
  }
}

json Server::Impl::model_card() const {
  return {{"id", model_name},
          {"object", "model"},
          {"created", started_at},
          {"owned_by", "nanocascade"},
          {"max_model_len", loop.stats().max_model_len}};
}

void Server::Impl::handle_generate(ApiKind kind, const Request& req, const std::string& body,
                                   Response& res) {
  try {
    const std::string ct = req.get_header_value("Content-Type");
    if (!ct.empty() && lower(trim(ct.substr(0, ct.find(';')))) != "application/json") {
      throw ApiError(415, fmt::format("Content-Type must be application/json, got '{}'", ct),
                     "invalid_request_error", "", "unsupported_media_type");
    }
    ParsedRequest pr = parse_request(kind, body);
    if (pr.model != model_name) {
      throw ApiError(404,
                     fmt::format("the model '{}' does not exist; this server serves '{}'", pr.model,
                                 model_name),
                     "invalid_request_error", "model", "model_not_found");
    }
    std::string session = req.get_header_value("X-Session-Id");
    if (session.empty()) session = pr.user;
    const ParsedRequest head = [&] {  // what the response needs (not the prompt)
      ParsedRequest c;
      c.kind = pr.kind;
      c.model = pr.model;
      c.stream = pr.stream;
      c.include_usage = pr.include_usage;
      return c;
    }();
    std::shared_ptr<RequestHandle> h = loop.submit(std::move(pr), std::move(session));
    CancelGuard guard(h);
    ClientConnection conn(req);
    StreamEvent ev;
    if (!wait_event(*h, conn, ev)) return;  // the client left; the guard aborts the request
    if (ev.kind == StreamEvent::Kind::Error) {
      guard.disarm();
      throw *ev.error;
    }
    if (head.stream) {
      respond_stream(head, h, guard, req, res);
    } else {
      respond_whole(kind, h, guard, conn, ev.num_prompt_tokens, res);
    }
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::respond_whole(ApiKind kind, const std::shared_ptr<RequestHandle>& h,
                                 CancelGuard& guard, ClientConnection& conn, int prompt_tokens,
                                 Response& res) {
  std::string text;
  for (;;) {
    StreamEvent ev;
    if (!wait_event(*h, conn, ev)) return;  // the client left
    if (ev.kind == StreamEvent::Kind::Error) {
      guard.disarm();
      throw *ev.error;
    }
    RequestOutput& o = ev.output;
    text += o.text_delta;
    if (!o.finished) continue;
    guard.disarm();
    if (o.finish_reason == FinishReason::Abort) {
      throw ApiError(503, "the request was aborted by the engine", "server_error");
    }
    const ResponseMeta meta{kind, new_response_id(kind), int64_t(std::time(nullptr)), model_name};
    send_json(res, 200,
              completion_response(meta, text, finish_reason_name(o.finish_reason), prompt_tokens,
                                  o.num_completion_tokens));
    return;
  }
}

void Server::Impl::respond_stream(const ParsedRequest& pr, const std::shared_ptr<RequestHandle>& h,
                                  CancelGuard& guard, const Request& req, Response& res) {
  struct State {
    std::shared_ptr<RequestHandle> h;
    ClientConnection conn;
    ResponseMeta meta;
    bool include_usage = false;
    bool finished = false;
  };
  auto st = std::make_shared<State>(State{
      h, ClientConnection(req),
      ResponseMeta{pr.kind, new_response_id(pr.kind), int64_t(std::time(nullptr)), model_name},
      pr.include_usage, false});
  guard.disarm();  // from here the releaser below cancels an unfinished stream
  const auto poll_interval = poll();
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto provider = [st, poll_interval](size_t, httplib::DataSink& sink) -> bool {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        const ResponseMeta& m = st->meta;
        if (m.kind == ApiKind::Chat &&
            !write(sse_event(stream_chunk(m, "", "", true, st->include_usage)))) {
          return false;
        }
        for (;;) {
          StreamEvent ev;
          const bool got = st->h->next(ev, poll_interval);
          if (st->conn.closed_every(poll_interval)) return false;
          if (!got) continue;
          if (ev.kind == StreamEvent::Kind::Error) {
            // Headers are out: the error goes in the stream, as OpenAI does.
            st->finished = true;
            write(sse_event(ev.error->to_json()));
            write(kSseDone);
            sink.done();
            return true;
          }
          const RequestOutput& o = ev.output;
          if (!o.text_delta.empty() &&
              !write(sse_event(stream_chunk(m, o.text_delta, "", false, st->include_usage)))) {
            return false;
          }
          if (!o.finished) continue;
          st->finished = true;
          if (o.finish_reason == FinishReason::Abort) {
            write(sse_event(
                ApiError(503, "the request was aborted by the engine", "server_error").to_json()));
          } else {
            write(sse_event(stream_chunk(m, "", finish_reason_name(o.finish_reason), false,
                                         st->include_usage)));
            if (st->include_usage) {
              write(sse_event(usage_chunk(m, o.num_prompt_tokens, o.num_completion_tokens)));
            }
          }
          write(kSseDone);
          sink.done();
          return true;
        }
      };
  auto releaser = [st](bool) {
    if (!st->finished) st->h->cancel();  // the client left mid-stream
  };
  if (req.version == "HTTP/1.0") {
    // No chunked encoding for HTTP/1.0: the stream ends when the connection closes.
    close_connection_after(res);
    res.set_content_provider("text/event-stream", provider, releaser);
  } else {
    res.set_chunked_content_provider("text/event-stream", provider, releaser);
  }
}

// Before any body is read: the connection cap, CORS, the framing (a refused body is not read,
// and its connection closes), then the API key.
void Server::Impl::setup_checks() {
  http->set_pre_routing_handler([this](const Request& req, Response& res) {
    using HR = httplib::Server::HandlerResponse;
    cors.add_headers(req, res);
    if (connection_rejected()) {
      close_connection_after(res);
      send_error(res, ApiError(503,
                               fmt::format("too many connections (the limit is {})",
                                           opts.max_connections),
                               "server_error", "", "too_many_connections"));
      return HR::Handled;
    }
    if (cors.answer_preflight(req, res)) return HR::Handled;
    if (std::optional<ApiError> e = body_framing_error(req, opts.max_body_bytes)) {
      close_connection_after(res);
      send_error(res, *e);
      return HR::Handled;
    }
    const std::string allow = allowed_method(req.path);
    if (has_body(req) && !(allow == "POST" && req.method == "POST")) {
      close_connection_after(res);  // the body stays unread
      if (req.method != "GET" && req.method != "HEAD" && req.method != allow) {
        if (allow.empty()) {
          send_error(res, http_error(req, 404, opts.max_body_bytes));
        } else {
          res.set_header("Allow", allow);
          send_error(res, ApiError(405,
                                   fmt::format("{} is not allowed on {} (use {})", req.method,
                                               req.path, allow),
                                   "invalid_request_error", "", "method_not_allowed"));
        }
        return HR::Handled;
      }
    }
    if ((req.path == "/v1" || req.path.starts_with("/v1/")) && !authorized(req)) {
      send_error(res, ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                               "invalid_request_error", "", "invalid_api_key"));
      return HR::Handled;
    }
    return HR::Unhandled;
  });
  http->set_expect_100_continue_handler([this](const Request& req, Response& res) {
    if (lower(trim(req.get_header_value("Expect"))) != "100-continue") return 417;
    if (connection_rejected()) return 100;  // the pre-routing handler answers 503
    if (std::optional<ApiError> e = body_framing_error(req, opts.max_body_bytes)) {
      close_connection_after(res);
      cors.add_headers(req, res);
      send_error(res, *e);
      return e->status();
    }
    return 100;
  });
}

// Reads the body of a generation request within the cap (a chunked body has no announced
// length: reading stops at the cap, the rest is not read).
void Server::Impl::handle_post(ApiKind kind, const Request& req, Response& res,
                               const httplib::ContentReader& read) {
  std::string body;
  bool over = false;
  // Without a Content-Length or chunked encoding the body is empty (RFC 9112 6.3); httplib
  // would read until the connection closes.
  const bool framed = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
  const bool ok = !framed || read([&](const char* data, size_t n) {
    if (body.size() + n > opts.max_body_bytes) {
      over = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (over || !ok) {
    close_connection_after(res);
    send_error(res, over ? http_error(req, 413, opts.max_body_bytes)
                         : request_timed_out() ? http_error(req, 408, opts.max_body_bytes)
                                               : http_error(req, 400, opts.max_body_bytes));
    return;
  }
  handle_generate(kind, req, body, res);
}

void Server::Impl::setup_routes() {
  setup_checks();
  http->Post("/v1/chat/completions",
             [this](const Request& req, Response& res, const httplib::ContentReader& read) {
               handle_post(ApiKind::Chat, req, res, read);
             });
  http->Post("/v1/completions",
             [this](const Request& req, Response& res, const httplib::ContentReader& read) {
               handle_post(ApiKind::Completion, req, res, read);
             });
  http->Get("/v1/models", [this](const Request&, Response& res) {
    send_json(res, 200, {{"object", "list"}, {"data", json::array({model_card()})}});
  });
  http->Get(R"(/v1/models/(.+))", [this](const Request& req, Response& res) {
    if (req.matches[1] == model_name) {
      send_json(res, 200, model_card());
    } else {
      send_error(res,
                 ApiError(404, fmt::format("the model '{}' does not exist", req.matches[1].str()),
                          "invalid_request_error", "model", "model_not_found"));
    }
  });
  http->Get("/health", [this](const Request&, Response& res) {
    const bool ok = loop.healthy();
    send_json(res, ok ? 200 : 503, {{"status", ok ? "ok" : "unhealthy"}});
  });
  http->Get("/metrics", [this](const Request&, Response& res) {
    res.set_content(metrics.render(loop.stats(), loop.num_in_flight()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });

  // 405 for the known routes under the wrong method.
  auto not_allowed = [](const char* allow) {
    return [allow](const Request& req, Response& res) {
      res.set_header("Allow", allow);
      send_error(res, ApiError(405,
                               fmt::format("{} is not allowed on {} (use {})", req.method, req.path,
                                           allow),
                               "invalid_request_error", "", "method_not_allowed"));
    };
  };
  for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
    http->Get(path, not_allowed("POST"));
    http->Put(path, not_allowed("POST"));
    http->Patch(path, not_allowed("POST"));
    http->Delete(path, not_allowed("POST"));
  }
  for (const char* path : {"/v1/models", "/health", "/metrics"}) {
    http->Post(path, not_allowed("GET"));
    http->Put(path, not_allowed("GET"));
    http->Patch(path, not_allowed("GET"));
    http->Delete(path, not_allowed("GET"));
  }

  http->set_error_handler(
      httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 400 && request_timed_out()) {
          res.status = 408;
          close_connection_after(res);
        }
        send_error(res, http_error(req, res.status, opts.max_body_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http->set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, fmt::format("internal error: {}", what), "server_error"));
  });
  http->set_logger(
      [this](const Request&, const Response& res) { metrics.on_http_response(res.status); });
}

Server::Server(Engine& engine, ServerOptions opts)
    : impl_(std::make_unique<Impl>(engine, std::move(opts))) {}

Server::~Server() {
  stop();
}

void Server::start() {
  Impl& m = *impl_;
  NC_CHECK(!m.started, "server: already started");
  NC_CHECK_AS(ErrorKind::InvalidArgument, m.opts.port >= 0 && m.opts.port <= 65535,
              "server: port {} outside 0..65535", m.opts.port);
  // A client that disconnects must not kill the process with SIGPIPE on the next write.
  std::signal(SIGPIPE, SIG_IGN);
  m.http = std::make_unique<HttpServer>(m.limits());
  m.http->set_payload_max_length(m.opts.max_body_bytes);
  m.http->set_read_timeout(std::max(1, m.opts.read_timeout_s), 0);
  m.http->set_write_timeout(std::max(1, m.opts.write_timeout_s), 0);
  m.http->set_tcp_nodelay(true);  // SSE chunks go out as they are written
  m.cors = CorsPolicy(m.opts.allowed_origins);
  m.setup_routes();

  if (m.opts.port == 0) {
    m.port = m.http->bind_to_any_port(m.opts.host);
  } else {
    m.port = m.http->bind_to_port(m.opts.host, m.opts.port) ? m.opts.port : -1;
  }
  NC_CHECK(m.port > 0, "server: cannot listen on {}:{} (address in use or not available)",
           m.opts.host, m.opts.port);
  m.http->widen_backlog(1024);
  m.started_at = int64_t(std::time(nullptr));
  m.loop.start();
  m.listener = std::thread([&m] { m.http->listen_after_bind(); });
  m.started = true;
}

HttpLimits Server::Impl::limits() const {
  using std::chrono::seconds;
  HttpLimits l;
  l.read_timeout = seconds(std::max(1, opts.read_timeout_s));
  l.write_timeout = seconds(std::max(1, opts.write_timeout_s));
  l.header_timeout = seconds(std::max(1, opts.header_timeout_s));
  l.body_timeout = seconds(std::max(1, opts.body_timeout_s));
  l.idle_timeout = seconds(std::max(1, opts.keep_alive_timeout_s));
  l.max_connections = std::max(1, opts.max_connections);
  l.max_threads = opts.http_threads > 0 ? opts.http_threads
                                        : std::min(loop.max_in_flight() + 16, l.max_connections);
  return l;
}

void Server::check_can_bind(const std::string& host, int port) {
  if (port == 0) return;
  NC_CHECK(can_bind(host, port), "server: cannot listen on {}:{} (address in use or not available)", host, port);
}

void Server::stop() {
  Impl& m = *impl_;
  if (!m.started || m.stopped) return;
  m.stopped = true;
  m.loop.stop();  // in-flight handlers get their 503 (or the stream its error) and return
  if (m.http) m.http->stop();
  if (m.listener.joinable()) m.listener.join();
}

int Server::port() const {
  return impl_->port;
}
const std::string& Server::model_name() const {
  return impl_->model_name;
}
EngineLoop& Server::loop() {
  return impl_->loop;
}
ServerMetrics& Server::metrics() {
  return impl_->metrics;
}

}  // namespace nc::server
