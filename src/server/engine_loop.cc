#include "server/engine_loop.h"

#include <cstdio>

#include <fmt/format.h>

#include "core/error.h"
#include "server/tool_call_sections.h"
#include "server/tool_call_xml.h"

namespace nc::server {

namespace {

// How often an idle loop asks the engine whether its model can still run.
constexpr std::chrono::milliseconds kIdleHealthCheck{500};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ApiError shutting_down() {
  return ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
}

// The tool calls of the history's assistant turns (Kimi numbers its call ids across them).
int calls_in(const nlohmann::ordered_json& messages) {
  int n = 0;
  for (const auto& m : messages) {
    if (!m.is_object()) continue;
    if (const auto c = m.find("tool_calls"); c != m.end() && c->is_array()) n += int(c->size());
  }
  return n;
}

}  // namespace

// ---- RequestHandle ----

RequestHandle::RequestHandle(EngineLoop& loop, ParsedRequest req, std::string session_id)
    : loop_(loop),
      req_(std::move(req)),
      session_id_(std::move(session_id)),
      arrival_(Clock::now()) {}

bool RequestHandle::next(StreamEvent& ev, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  ev = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestHandle::cancel() {
  if (cancelled_.exchange(true)) return;
  loop_.wake();
}

void RequestHandle::push(StreamEvent ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

// ---- EngineLoop ----

EngineLoop::EngineLoop(Engine& engine, EngineLoopOptions opts, ServerMetrics& metrics)
    : engine_(engine), opts_(opts), metrics_(metrics) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, opts_.max_waiting >= 0,
              "server: --max-waiting must be >= 0, got {}", opts_.max_waiting);
  max_in_flight_ = engine_.config().max_num_seqs + opts_.max_waiting;
  stats_ = engine_.stats();
  max_model_len_ = stats_.max_model_len;
}

EngineLoop::~EngineLoop() {
  stop();
}

void EngineLoop::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  running_ = true;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void EngineLoop::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

void EngineLoop::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<RequestHandle> EngineLoop::submit(ParsedRequest req, std::string session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || !running_) throw shutting_down();
  const int n = in_flight_.load();
  if (n >= max_in_flight_) {
    throw ApiError(429,
                   fmt::format("the server is busy ({} requests in flight, at most {}); retry "
                               "later",
                               n, max_in_flight_),
                   "rate_limit_error", "", "server_busy");
  }
  in_flight_.fetch_add(1);  // only submit() increments, under mu_
  auto h = std::make_shared<RequestHandle>(*this, std::move(req), std::move(session_id));
  pending_.push_back(h);
  cv_.notify_all();
  return h;
}

EngineStats EngineLoop::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

void EngineLoop::publish_stats() {
  EngineStats s = engine_.stats();
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_ = s;
}

void EngineLoop::release(RequestHandle& h) {
  (void)h;
  in_flight_.fetch_sub(1);
}

ChatPrompt render_chat(const Engine& engine, const std::vector<ChatMessage>& messages,
                       const ToolRequest& tools, ChatPromptOptions ending, OutputFormat& format) {
  // As Engine::add_chat_request: the template's markers are control tokens, contents are text.
  if (tools.active) {
    // Tools and tool turns go through the model's Jinja template, call ids fitted to its format.
    const std::string tmpl = engine.chat_template_text(tools.tools.is_array());
    const nlohmann::ordered_json msgs = template_messages(tools, template_tool_format(tmpl));
    ending.template_kwargs_json = tools.template_kwargs.dump();
    ChatPrompt prompt = engine.chat_prompt_json(msgs.dump(), tools.tools.dump(), ending);
    format = detect_output_format(tmpl, prompt.text, tools.parse_calls());
    format.first_call_index = calls_in(msgs);
    if (is_tagged_format(format.tools))
      format.param_types =
          std::make_shared<ParamTypeTable>(ParamTypeTable{param_types_of(tools.tools)});
    return prompt;
  }
  ChatPrompt prompt = engine.chat_prompt(messages, ending);
  // The reasoning block's markers and whether the generation prompt opened one.
  format = detect_output_format(engine.chat_template_text(false), prompt.text, false);
  return prompt;
}

std::vector<int32_t> EngineLoop::tokenize(const ParsedRequest& r, OutputFormat& format) const {
  if (r.kind == ApiKind::Chat) {
    ChatPrompt prompt = render_chat(engine_, r.messages, r.tools, r.prompt_ending, format);
    format.forced_calls = r.tools.active && r.structured_param == "tool_choice";
    // The grammar writes the calls at once: no reasoning block, even where the prompt opened
    // one (QwQ's and R1 distills' generation prompts end in <think>).
    if (format.forced_calls) format.starts_in_think = false;
    return std::move(prompt.ids);
  }
  if (r.prompt_is_ids) return r.prompt_ids;
  return engine_.encode(r.prompt, true, r.parse_special);
}

SamplingParams EngineLoop::engine_sampling(const ParsedRequest& r, int num_prompt) const {
  SamplingParams sp = r.sampling;
  if (r.max_tokens_given && r.max_tokens_is_cap)
    sp.max_tokens = std::min(sp.max_tokens, std::max(1, max_model_len_ - num_prompt));
  if (r.max_tokens_given) return sp;
  // At least 1: a prompt over the context then meets the engine's own check (ContextLength).
  sp.max_tokens = std::max(1, max_model_len_ - num_prompt);
  // The operator's default, else the API's: 16 for completions (OpenAI's and vLLM's), the rest
  // of the context for chat (vLLM's).
  const int api_default = r.kind == ApiKind::Completion ? kCompletionsDefaultMaxTokens : 0;
  const int fallback = opts_.default_max_tokens > 0 ? opts_.default_max_tokens : api_default;
  if (fallback > 0) sp.max_tokens = std::min(sp.max_tokens, std::max(fallback, sp.min_tokens));
  return sp;
}

std::string EngineLoop::error_param(const ParsedRequest& r, const Error& e, int num_prompt) const {
  if (e.kind() == ErrorKind::ContextLength) return context_param(r, num_prompt);
  if (r.sampling.structured.active() &&
      std::string_view(e.what()).starts_with(structured_kind_name(r.sampling.structured.kind)))
    return r.structured_param;
  // The engine's checks of ids against the vocabulary name the field first.
  for (const char* field : {"stop_token_ids", "logit_bias"})
    if (std::string_view(e.what()).starts_with(field)) return field;
  return "";
}

std::string EngineLoop::context_param(const ParsedRequest& r, int num_prompt) const {
  if (num_prompt >= max_model_len_) return r.kind == ApiKind::Chat ? "messages" : "prompt";
  return "max_tokens";
}

LogprobToken render_logprob(const Engine& engine, const TokenLogprob& t) {
  LogprobToken out;
  out.id = t.token;
  out.text = engine.decode({t.token}, /*skip_special_tokens=*/false);
  out.logprob = t.logprob;
  for (const auto& [id, lp] : t.top) out.top.emplace_back(engine.decode({id}, false), lp);
  return out;
}

void EngineLoop::admit(const std::shared_ptr<RequestHandle>& h) {
  if (h->cancelled()) {
    release(*h);
    return;
  }
  StreamEvent ev;
  const ParsedRequest& r = h->req_;
  int n = 0;
  try {
    const std::vector<int32_t> ids = tokenize(r, ev.format);
    n = int(ids.size());
    // The engine validates the request (token ids, context length, the KV cache, the chat
    // template); its error's kind says which HTTP answer it gets. Choices after the first
    // share the first one's prompt pages (Engine::add_requests).
    SamplingParams sp = engine_sampling(r, n);
    if (keeps_special_tokens(ev.format)) sp.skip_special_tokens = false;
    h->ids_ = engine_.add_requests(ids, sp, r.best_of);
    h->unfinished_ = int(h->ids_.size());
    for (size_t i = 0; i < h->ids_.size(); ++i) {
      engine_.set_session(h->ids_[i], h->session_id_);
      active_.emplace(h->ids_[i], Active{h, int(i)});
    }
    metrics_.on_prompt_tokens(n);
    ev.kind = StreamEvent::Kind::Accepted;
    ev.num_prompt_tokens = n;
    if (r.kind == ApiKind::Completion)
      ev.prompt_text = r.prompt_is_ids ? engine_.decode(ids, false) : r.prompt;
    if (r.echo) {
      // The first prompt token has no log-probability (nothing before it predicts it).
      ev.prompt_first = render_logprob(engine_, TokenLogprob{ids.front(), 0, {}});
      ev.prompt_first.logprob.reset();
    }
  } catch (const Error& e) {
    ev.kind = StreamEvent::Kind::Error;
    ev.error = api_error_from(e, error_param(r, e, n));
  } catch (const std::exception& e) {
    ev.kind = StreamEvent::Kind::Error;
    ev.error = ApiError(500, fmt::format("internal error: {}", e.what()), "server_error");
  }
  if (ev.kind == StreamEvent::Kind::Error) release(*h);
  h->push(std::move(ev));
}

void EngineLoop::fail_all(const ApiError& e) {
  for (auto& [id, a] : active_) engine_.abort(id);
  for (auto& [id, a] : active_) {
    RequestHandle& h = *a.handle;
    if (h.unfinished_ <= 0) continue;  // its error went out with an earlier choice
    h.unfinished_ = 0;
    release(h);
    StreamEvent ev;
    ev.kind = StreamEvent::Kind::Error;
    ev.error = e;
    h.push(std::move(ev));
  }
  active_.clear();
}

void EngineLoop::step_once() {
  std::vector<RequestOutput> outs;
  try {
    outs = engine_.step();
    healthy_ = true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nanocascade server: engine step failed: %s\n", e.what());
    healthy_ = false;
    fail_all(ApiError(500, fmt::format("the engine failed: {}", e.what()), "server_error"));
    publish_stats();
    return;
  }
  publish_stats();  // before routing: a handler that sees its last output sees its pages freed
  for (RequestOutput& o : outs) route(o);
}

void EngineLoop::route(RequestOutput& o) {
  auto it = active_.find(o.id);
  if (it == active_.end()) return;
  const std::shared_ptr<RequestHandle> h = it->second.handle;
  const int choice = it->second.choice;
  if (o.finished) {
    active_.erase(it);
    metrics_.on_request_finished(o.num_prompt_tokens, o.num_completion_tokens,
                                 o.time_to_first_token_s, o.time_per_output_token_s,
                                 seconds_since(h->arrival_), o.finish_reason);
    if (--h->unfinished_ == 0) release(*h);
  }
  if (h->cancelled()) return;
  StreamEvent ev;
  ev.kind = StreamEvent::Kind::Output;
  ev.choice = choice;
  for (const TokenLogprob& t : o.logprobs) ev.logprobs.push_back(render_logprob(engine_, t));
  for (const TokenLogprob& t : o.prompt_logprobs)
    ev.prompt_logprobs.push_back(render_logprob(engine_, t));
  ev.output = std::move(o);
  h->push(std::move(ev));
}

void EngineLoop::check_idle_health() {
  const std::string why = engine_.health_error();
  if (why.empty() || !healthy_.exchange(false)) return;
  std::fprintf(stderr, "nanocascade server: the model cannot run: %s\n", why.c_str());
}

void EngineLoop::run() {
  for (;;) {
    std::deque<std::shared_ptr<RequestHandle>> batch;
    const bool busy = engine_.has_unfinished();
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle, it checks the model now and then: a tensor-parallel rank that dies between
      // requests makes /health unhealthy without waiting for a request to fail.
      if (!cv_.wait_for(lock, kIdleHealthCheck,
                        [&] { return stop_ || wake_ || busy || !pending_.empty(); })) {
        lock.unlock();
        check_idle_health();
        continue;
      }
      if (stop_) break;
      wake_ = false;
      batch.swap(pending_);
    }
    for (const auto& h : batch) admit(h);
    for (auto& [id, a] : active_) {
      RequestHandle& h = *a.handle;
      if (h.cancelled() && !h.abort_sent_) {
        // Its pages return now; the finished outputs come with the step.
        for (RequestId rid : h.ids_) engine_.abort(rid);
        h.abort_sent_ = true;
      }
    }
    if (engine_.has_unfinished()) {
      step_once();
    } else {
      publish_stats();
    }
  }
  // Shutdown: fail what is running and what waits, and give the pages back.
  fail_all(shutting_down());
  std::deque<std::shared_ptr<RequestHandle>> rest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rest.swap(pending_);
  }
  for (const auto& h : rest) {
    release(*h);
    StreamEvent ev;
    ev.kind = StreamEvent::Kind::Error;
    ev.error = shutting_down();
    h->push(std::move(ev));
  }
  for (int i = 0; i < 4 && engine_.has_unfinished(); ++i) {
    try {
      engine_.step();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nanocascade server: engine step failed at shutdown: %s\n", e.what());
      break;
    }
  }
  publish_stats();
}

}  // namespace nc::server
