// The server's routes, the checks made before a request's body is read, and its HTTP limits.
#include "server/server_impl.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"

namespace nc::server {

namespace {

// The method a known route takes ("" for an unknown route).
std::string allowed_method(const std::string& path) {
  if (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/responses" ||
      path == "/v1/messages" || path == "/v1/messages/count_tokens" || path == "/tokenize" ||
      path == "/detokenize") {
    return "POST";
  }
  if (path.starts_with("/v1/responses/")) return "GET";  // and DELETE
  if (path == "/v1/models" || path.starts_with("/v1/models/") || path == "/health" ||
      path == "/metrics" || path == "/get_model_info" || path == "/get_server_info") {
    return "GET";
  }
  return "";
}

// 405, with the methods the route takes.
void send_not_allowed(const httplib::Request& req, httplib::Response& res,
                      const std::string& allow) {
  res.set_header("Allow", allow);
  send_error_for(
      req, res,
      ApiError(405, fmt::format("{} is not allowed on {} (use {})", req.method, req.path, allow),
               "invalid_request_error", "", "method_not_allowed"));
}

// Whether a handler serves req's method on its path: GET, HEAD and OPTIONS anywhere (httplib
// answers an unknown GET with 404 itself), the route's own method, and DELETE of a stored response.
// A request with a body that no handler reads is not routed, except a GET's.
bool routed(const httplib::Request& req, const std::string& allow) {
  if (req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS") return true;
  if (req.method == allow) return true;
  return req.method == "DELETE" && req.path.starts_with("/v1/responses/") && !has_body(req);
}

}  // namespace

void Server::Impl::send_unrouted(const Request& req, Response& res, const std::string& allow) {
  if (allow.empty()) {
    send_error_for(req, res, http_error(req, 404, opts.max_body_bytes));
    return;
  }
  // A stored response is read and deleted.
  send_not_allowed(req, res, req.path.starts_with("/v1/responses/") ? "GET, DELETE" : allow);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

void send_json(Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void send_ordered_json(Response& res, int status, const nlohmann::ordered_json& j) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void send_anthropic_error(Response& res, const ApiError& e) {
  send_error(res, e);  // the status and headers
  res.set_content(dump_json(anthropic_error_json(e)), "application/json");
}

void send_error_for(const Request& req, Response& res, const ApiError& e) {
  if (req.path == "/v1/messages" || req.path.starts_with("/v1/messages/"))
    send_anthropic_error(res, e);
  else
    send_error(res, e);
}

void send_error(Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_body(e), "application/json");
}

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

// Before any body is read: the connection cap, CORS, the framing (a refused body is not read,
// and its connection closes), then the API key.
void Server::Impl::setup_checks() {
  http->set_pre_routing_handler([this](const Request& req, Response& res) {
    using HR = httplib::Server::HandlerResponse;
    cors.add_headers(req, res);
    if (connection_rejected()) {
      close_connection_after(res);
      send_error_for(
          req, res,
          ApiError(503, fmt::format("too many connections (the limit is {})", opts.max_connections),
                   "server_error", "", "too_many_connections"));
      return HR::Handled;
    }
    if (cors.answer_preflight(req, res)) return HR::Handled;
    if (std::optional<ApiError> e = body_framing_error(req, opts.max_body_bytes)) {
      close_connection_after(res);
      send_error_for(req, res, *e);
      return HR::Handled;
    }
    const std::string allow = allowed_method(req.path);
    if (!routed(req, allow)) {
      // Answered before httplib reads a body: without a Content-Length it would read one until
      // the connection closes, so an unframed POST to no route would wait for its deadline.
      close_connection_after(res);  // any body stays unread
      send_unrouted(req, res, allow);
      return HR::Handled;
    }
    if (has_body(req) && !(allow == "POST" && req.method == "POST")) {
      close_connection_after(res);  // a GET's body stays unread
    }
    const bool guarded = req.path == "/v1" || req.path.starts_with("/v1/") ||
                         req.path == "/tokenize" || req.path == "/detokenize";
    if (guarded && !authorized(req)) {
      send_error_for(
          req, res,
          ApiError(401,
                   "invalid or missing API key (Authorization: Bearer <key>, or x-api-key: <key>)",
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
      send_error_for(req, res, *e);
      return e->status();
    }
    return 100;
  });
}

// Reads the body of a generation request within the cap (a chunked body has no announced
// length: reading stops at the cap, the rest is not read).
void Server::Impl::handle_post(const Request& req, Response& res,
                               const httplib::ContentReader& read, const BodyHandler& handle) {
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
    send_error_for(req, res,
                   over                  ? http_error(req, 413, opts.max_body_bytes)
                   : request_timed_out() ? http_error(req, 408, opts.max_body_bytes)
                                         : http_error(req, 400, opts.max_body_bytes));
    return;
  }
  handle(body);
}

void Server::Impl::setup_routes() {
  setup_checks();
  for (ApiKind kind : {ApiKind::Chat, ApiKind::Completion}) {
    http->Post(kind == ApiKind::Chat ? "/v1/chat/completions" : "/v1/completions",
               [this, kind](const Request& req, Response& res, const httplib::ContentReader& read) {
                 handle_post(req, res, read, [&](const std::string& body) {
                   handle_generate(kind, req, body, res);
                 });
               });
  }
  http->Post("/v1/responses", [this](const Request& req, Response& res,
                                     const httplib::ContentReader& read) {
    handle_post(req, res, read, [&](const std::string& body) { handle_responses(req, body, res); });
  });
  http->Post("/v1/messages", [this](const Request& req, Response& res,
                                    const httplib::ContentReader& read) {
    handle_post(req, res, read, [&](const std::string& body) { handle_anthropic(req, body, res); });
  });
  http->Post("/v1/messages/count_tokens",
             [this](const Request& req, Response& res, const httplib::ContentReader& read) {
               handle_post(req, res, read, [&](const std::string& body) {
                 handle_anthropic_count(req, body, res);
               });
             });
  http->Get(R"(/v1/responses/([^/]+))",
            [this](const Request& req, Response& res) { handle_stored_response(req, res); });
  http->Delete(R"(/v1/responses/([^/]+))",
               [this](const Request& req, Response& res) { handle_stored_response(req, res); });
  http->Post(
      "/tokenize", [this](const Request& req, Response& res, const httplib::ContentReader& read) {
        handle_post(req, res, read, [&](const std::string& body) { handle_tokenize(body, res); });
      });
  http->Post(
      "/detokenize", [this](const Request& req, Response& res, const httplib::ContentReader& read) {
        handle_post(req, res, read, [&](const std::string& body) { handle_detokenize(body, res); });
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
  // SGLang's model and server info routes: what its gateway reads when a replica registers (the
  // served id becomes the replica's model, which requests without `model` get; docs/server.md).
  for (const char* path : {"/get_model_info", "/get_server_info"}) {
    http->Get(path, [this](const Request&, Response& res) {
      send_json(res, 200,
                {{"model_path", model_name},
                 {"served_model_name", model_name},
                 {"is_generation", true},
                 {"max_context_length", loop.stats().max_model_len},
                 {"max_running_requests", engine.config().max_num_seqs}});
    });
  }
  http->Get("/health", [this](const Request&, Response& res) {
    const bool ok = loop.healthy();
    send_json(res, ok ? 200 : 503, {{"status", ok ? "ok" : "unhealthy"}});
  });
  http->Get("/metrics", [this](const Request&, Response& res) {
    res.set_content(metrics.render(loop.stats()), "text/plain; version=0.0.4; charset=utf-8");
  });

  // 405 for a GET of the POST routes (other methods no route serves: send_unrouted, before the
  // body).
  for (const char* path :
       {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
        "/v1/messages/count_tokens", "/tokenize", "/detokenize"}) {
    http->Get(path, [](const Request& req, Response& res) { send_not_allowed(req, res, "POST"); });
  }

  http->set_error_handler(
      httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 400 && request_timed_out()) {
          res.status = 408;
          close_connection_after(res);
        }
        // httplib's own 400 / 414 (a request line or header it could not parse) leaves the rest
        // of that request unread: what follows on the connection is not a request boundary, so
        // it closes (RFC 9112, section 2.2) instead of running those bytes as requests.
        if (res.status == 400 || res.status == 414) close_connection_after(res);
        send_error_for(req, res, http_error(req, res.status, opts.max_body_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http->set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error_for(req, res,
                   ApiError(500, fmt::format("internal error: {}", what), "server_error"));
  });
  http->set_logger(
      [this](const Request&, const Response& res) { metrics.on_http_response(res.status); });
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
  NC_CHECK(can_bind(host, port), "server: cannot listen on {}:{} (address in use or not available)",
           host, port);
}

}  // namespace nc::server
