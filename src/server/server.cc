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
#include "server/server_impl.h"

namespace nc::server {

namespace {

// Comparison in time independent of where the strings differ (the key must not leak).
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= unsigned(uint8_t(a[i]) ^ uint8_t(b[i]));
  return diff == 0;
}

// An engine abort: the request's own fault (400 naming it) when the engine says what it was,
// else the server's (503).
ApiError abort_error(const std::string& reason) {
  if (!reason.empty()) return ApiError(400, reason, "invalid_request_error");
  return ApiError(503, "the request was aborted by the engine", "server_error");
}

}  // namespace

std::string default_model_name(const std::string& model_path) {
  std::filesystem::path p(model_path.empty() ? EngineConfig::default_model_path() : model_path);
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  std::string name = p.filename().string();
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name.empty() ? p.string() : name;
}

bool Server::Impl::authorized(const Request& req) const {
  if (opts.api_key.empty()) return true;
  // Anthropic's clients send the key as x-api-key.
  if (same_secret(trim(req.get_header_value("x-api-key")), opts.api_key)) return true;
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

void Server::Impl::check_content_type(const Request& req) const {
  const std::string ct = req.get_header_value("Content-Type");
  if (!ct.empty() && lower(trim(ct.substr(0, ct.find(';')))) != "application/json") {
    throw ApiError(415, fmt::format("Content-Type must be application/json, got '{}'", ct),
                   "invalid_request_error", "", "unsupported_media_type");
  }
}

void Server::Impl::handle_generate(ApiKind kind, const Request& req, const std::string& body,
                                   Response& res) {
  try {
    check_content_type(req);
    ParsedRequest pr = parse_request(kind, body, ParseLimits{opts.max_n});
    if (!pr.more_prompts.empty()) return generate_batch(std::move(pr), req, res);
    const ResponseShape shape = ResponseShape::of(pr);  // what the response needs
    generate(std::move(pr), req, res, [&](const StreamEvent& accepted) {
      const ResponseMeta meta{kind, new_response_id(kind), int64_t(std::time(nullptr)), model_name};
      return std::make_shared<ResponseBuilder>(meta, shape, accepted);
    });
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::handle_responses(const Request& req, const std::string& body, Response& res) {
  try {
    check_content_type(req);
    HistoryLookup history;
    if (responses.enabled()) {
      history = [this](const std::string& id, std::string& missing) {
        return responses.conversation(id, &missing);
      };
    }
    ResponsesRequest r = parse_responses_request(body, ParseLimits{opts.max_n}, history);
    const bool keep = r.store && responses.enabled();
    r.echo["store"] = keep;
    ResponsesMeta meta{random_id("resp_"), int64_t(std::time(nullptr)), model_name,
                       std::move(r.echo),  r.chat.want_logprobs,        nullptr};
    if (keep) {  // the response says whether it was kept (one too large for the store is not)
      meta.on_done = [this, input = std::move(r.input),
                      parent = std::move(r.previous_response_id)](json& response) {
        response["store"] = responses.put(response["id"].get<std::string>(),
                                          {parent, with_output_turn(input, response), response});
      };
    }
    try {
      generate(std::move(r.chat), req, res, [m = std::move(meta)](const StreamEvent& accepted) {
        return std::make_shared<ResponsesBuilder>(m, accepted);
      });
    } catch (const ApiError& e) {
      throw as_responses_error(e);  // the engine's errors name chat fields
    }
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::handle_anthropic(const Request& req, const std::string& body, Response& res) {
  try {
    check_content_type(req);
    ParsedRequest pr = parse_anthropic_request(body, ParseLimits{opts.max_n});
    generate(std::move(pr), req, res, [this](const StreamEvent& accepted) {
      return std::make_shared<AnthropicBuilder>(random_id("msg_"), model_name, accepted);
    });
  } catch (const ApiError& e) {
    send_anthropic_error(res, e);
  }
}

void Server::Impl::handle_anthropic_count(const Request& req, const std::string& body,
                                          Response& res) {
  try {
    check_content_type(req);
    const TokenizeRequest r = parse_anthropic_count(body);
    check_model(r.model);
    OutputFormat format;
    size_t n = 0;
    try {
      n = render_chat(engine, r.messages, r.tools, r.prompt_ending, format).ids.size();
    } catch (const Error& e) {
      throw api_error_from(e, "messages");
    }
    send_json(res, 200, {{"input_tokens", n}});
  } catch (const ApiError& e) {
    send_anthropic_error(res, e);
  }
}

void Server::Impl::handle_stored_response(const Request& req, Response& res) {
  const std::string id = req.matches[1];
  std::optional<ResponseStore::Entry> e = req.method == "GET" ? responses.get(id) : std::nullopt;
  const bool found = req.method == "GET" ? e.has_value() : responses.erase(id);
  if (!found) {
    send_error(res, ApiError(404, fmt::format("no stored response '{}'", id),
                             "invalid_request_error", "response_id", "not_found"));
  } else if (req.method == "GET") {
    send_json(res, 200, e->response);
  } else {
    send_json(res, 200, {{"id", id}, {"object", "response"}, {"deleted", true}});
  }
}

void Server::Impl::generate(ParsedRequest pr, const Request& req, Response& res,
                            const BuilderFactory& make_builder) {
  check_model(pr.model);
  prepare_structured(pr);
  std::string session = req.get_header_value("X-Session-Id");
  if (session.empty()) session = pr.user;
  const bool stream = pr.stream;
  std::shared_ptr<RequestHandle> h = loop.submit(std::move(pr), std::move(session));
  CancelGuard guard(h);
  ClientConnection conn(req);
  StreamEvent ev;
  if (!wait_event(*h, conn, ev)) return;  // the client left; the guard aborts the request
  if (ev.kind == StreamEvent::Kind::Error) {
    guard.disarm();
    throw *ev.error;
  }
  std::shared_ptr<OutputBuilder> builder = make_builder(ev);
  if (stream) {
    respond_stream(builder, h, guard, req, res);
  } else {
    respond_whole(*builder, h, guard, conn, res);
  }
}

void Server::Impl::check_model(const std::string& model) const {
  // Optional: a request that names no model gets the served one.
  if (model.empty() || model == model_name) return;
  throw ApiError(
      404, fmt::format("the model '{}' does not exist; this server serves '{}'", model, model_name),
      "invalid_request_error", "model", "model_not_found");
}

void Server::Impl::prepare_structured(ParsedRequest& pr) const {
  if (pr.kind == ApiKind::Chat && pr.tools.parse_calls()) {
    const OutputFormat f = detect_output_format(engine.chat_template_text(true), "", true);
    StructuredOutput g = tool_choice_grammar(pr.tools, f.tools);
    if (g.active()) {  // a forced call: what the output must be, whatever response_format says
      pr.sampling.structured = std::move(g);
      pr.structured_param = "tool_choice";
    }
  }
  if (!pr.sampling.structured.active()) return;
  try {
    engine.compile_grammar(pr.sampling.structured);
  } catch (const Error& e) {
    // Too many compiling at once is the server's load (429 server_busy, which clients retry),
    // not the request's fault.
    if (e.kind() == ErrorKind::Overloaded) throw api_error_from(e, pr.structured_param);
    throw invalid_param(pr.structured_param, e.what());
  }
}

bool Server::Impl::collect_whole(OutputBuilder& b, RequestHandle& h, CancelGuard& guard,
                                 ClientConnection& conn) {
  std::string abort_reason;  // the first choice's, when the request was at fault
  while (!b.done()) {
    StreamEvent ev;
    if (!wait_event(h, conn, ev)) return false;  // the client left
    if (ev.kind == StreamEvent::Kind::Error) {
      guard.disarm();
      throw *ev.error;
    }
    if (abort_reason.empty()) abort_reason = ev.output.abort_reason;
    b.add(ev);
  }
  guard.disarm();
  if (b.aborted()) throw abort_error(abort_reason);
  return true;
}

void Server::Impl::respond_whole(OutputBuilder& b, const std::shared_ptr<RequestHandle>& h,
                                 CancelGuard& guard, ClientConnection& conn, Response& res) {
  if (collect_whole(b, *h, guard, conn)) send_ordered_json(res, 200, b.response());
}

void Server::Impl::respond_stream(const std::shared_ptr<OutputBuilder>& b,
                                  const std::shared_ptr<RequestHandle>& h, CancelGuard& guard,
                                  const Request& req, Response& res) {
  struct State {
    std::shared_ptr<RequestHandle> h;
    ClientConnection conn;
    std::shared_ptr<OutputBuilder> b;
    bool finished = false;
  };
  auto st = std::make_shared<State>(State{h, ClientConnection(req), b, false});
  guard.disarm();  // from here the releaser below cancels an unfinished stream
  const auto poll_interval = poll();
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto stream_events = [st, poll_interval](httplib::DataSink& sink) -> bool {
    auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
    if (!write(st->b->start())) return false;
    for (;;) {
      StreamEvent ev;
      const bool got = st->h->next(ev, poll_interval);
      if (st->conn.closed_every(poll_interval)) return false;
      if (!got) continue;
      if (ev.kind == StreamEvent::Kind::Error) {
        // Headers are out: the error goes in the stream, as OpenAI does.
        st->finished = true;
        write(st->b->stream_error(*ev.error));
        write(st->b->aborted_end());
        sink.done();
        return true;
      }
      if (!write(st->b->stream(ev))) return false;
      if (ev.output.finished && ev.output.finish_reason == FinishReason::Abort)
        write(st->b->stream_error(abort_error(ev.output.abort_reason)));
      if (!st->b->done()) continue;
      st->finished = true;
      write(st->b->aborted() ? st->b->aborted_end() : st->b->end());
      sink.done();
      return true;
    }
  };
  // Nothing thrown here may reach the HTTP worker (no handler there: the process would end); a
  // bug in a builder ends this stream with an error event instead.
  auto provider = [st, stream_events](size_t, httplib::DataSink& sink) -> bool {
    try {
      return stream_events(sink);
    } catch (const std::exception& e) {
      st->finished = true;
      st->h->cancel();
      const std::string out =
          st->b->stream_error(
              ApiError(500, fmt::format("internal error: {}", e.what()), "server_error")) +
          st->b->aborted_end();
      sink.write(out.data(), out.size());
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

// The tokenizer is only read (const), so the handler threads use it directly, beside the engine
// thread's steps.
void Server::Impl::handle_tokenize(const std::string& body, Response& res) {
  try {
    const TokenizeRequest r = parse_tokenize(body);
    check_model(r.model);
    std::vector<int32_t> ids;
    try {
      OutputFormat format;
      ids = r.chat ? render_chat(engine, r.messages, r.tools, r.prompt_ending, format).ids
                   : engine.encode(r.prompt, r.add_special_tokens, r.parse_special);
    } catch (const Error& e) {
      throw api_error_from(e, r.chat ? "messages" : "prompt");
    }
    send_json(res, 200,
              {{"count", ids.size()},
               {"max_model_len", loop.stats().max_model_len},
               {"tokens", ids},
               {"token_strs", nullptr}});
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

void Server::Impl::handle_detokenize(const std::string& body, Response& res) {
  try {
    const DetokenizeRequest r = parse_detokenize(body);
    check_model(r.model);
    const int vocab = engine.vocab_size();
    for (size_t i = 0; i < r.tokens.size(); ++i) {
      if (r.tokens[i] >= vocab) {
        throw invalid_param("tokens", fmt::format("tokens[{}] = {} is outside the vocabulary "
                                                  "[0, {})",
                                                  i, r.tokens[i], vocab));
      }
    }
    send_json(res, 200, {{"prompt", engine.decode(r.tokens, /*skip_special_tokens=*/false)}});
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

Server::Server(Engine& engine, ServerOptions opts) {
  if (opts.max_connections <= 0) opts.max_connections = default_max_connections();
  impl_ = std::make_unique<Impl>(engine, std::move(opts));
}

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
  m.metrics.set_model_name(m.model_name);
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
int Server::http_threads_started() const {
  return impl_->http ? impl_->http->worker_threads() : 0;
}
int Server::parked_connections() const {
  return impl_->http ? impl_->http->parked_connections() : 0;
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
