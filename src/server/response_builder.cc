#include "server/response_builder.h"

#include <algorithm>
#include <numeric>

namespace nc::server {

using json = nlohmann::json;

namespace {

// vLLM's stop_reason: the stop string that ended a choice, else the stop token id, else null.
json stop_reason(const std::string& stop_string, int32_t stop_token_id) {
  if (!stop_string.empty()) return stop_string;
  return stop_token_id >= 0 ? json(stop_token_id) : json(nullptr);
}

}  // namespace

ResponseShape ResponseShape::of(const ParsedRequest& r) {
  ResponseShape s;
  s.kind = r.kind;
  s.n = r.n;
  s.best_of = r.best_of;
  s.want_logprobs = r.want_logprobs;
  s.echo = r.echo;
  s.max_tokens_zero = r.max_tokens_zero;
  s.include_usage = r.include_usage;
  return s;
}

ResponseBuilder::ResponseBuilder(ResponseMeta meta, ResponseShape shape,
                                 const StreamEvent& accepted)
    : meta_(std::move(meta)),
      shape_(shape),
      format_(accepted.format),
      prompt_tokens_(accepted.num_prompt_tokens),
      prompt_text_(accepted.prompt_text),
      prompt_first_(accepted.prompt_first),
      choices_(size_t(std::max(1, shape.best_of))),
      unfinished_(int(choices_.size())) {
  for (Choice& c : choices_) c.offset = text_offset_length(prompt_text_);
}

void ResponseBuilder::take_prompt_logprobs(const StreamEvent& ev) {
  // Only the first choice computes the prompt; every choice echoes its log-probabilities.
  if (!ev.prompt_logprobs.empty()) prompt_rest_ = ev.prompt_logprobs;
}

std::vector<LogprobToken> ResponseBuilder::prompt_tokens() const {
  std::vector<LogprobToken> toks{prompt_first_};
  toks.insert(toks.end(), prompt_rest_.begin(), prompt_rest_.end());
  return toks;
}

void ResponseBuilder::add(const StreamEvent& ev) {
  take_prompt_logprobs(ev);
  Choice& c = choices_.at(size_t(ev.choice));
  const RequestOutput& o = ev.output;
  c.text += o.text_delta;
  c.logprobs.insert(c.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
  for (const LogprobToken& t : ev.logprobs) c.sum_logprob += t.logprob.value_or(0.0f);
  if (!o.finished) return;
  --unfinished_;
  if (o.finish_reason == FinishReason::Abort) aborted_ = true;
  c.finish_reason = finish_reason_name(o.finish_reason);
  c.stop_string = o.stop_string;
  c.stop_token_id = o.stop_token_id;
  c.tokens = o.num_completion_tokens;
}

ChoiceResult ResponseBuilder::result(const Choice& c, int index) const {
  const bool zero = shape_.max_tokens_zero;
  ChoiceResult r;
  r.index = index;
  r.text = (shape_.echo ? prompt_text_ : std::string()) + (zero ? std::string() : c.text);
  r.finish_reason = zero ? "length" : c.finish_reason;
  if (!zero) r.stop_reason = stop_reason(c.stop_string, c.stop_token_id);
  if (shape_.kind == ApiKind::Chat) {
    ParsedOutput p = parse_output(c.text, format_);
    r.text = std::move(p.content);
    r.reasoning = std::move(p.reasoning);
    r.calls = std::move(p.calls);
    // The limit's "length" stands (as the Responses and Messages APIs say it first).
    if (!r.calls.empty() && r.finish_reason == "stop") r.finish_reason = "tool_calls";
  }
  if (!shape_.want_logprobs) return r;
  if (shape_.kind == ApiKind::Chat) {
    r.logprobs = chat_logprobs_json(c.logprobs);
    return r;
  }
  std::vector<LogprobToken> toks = shape_.echo ? prompt_tokens() : std::vector<LogprobToken>{};
  if (!zero) toks.insert(toks.end(), c.logprobs.begin(), c.logprobs.end());
  r.logprobs = completion_logprobs_json(toks, shape_.echo ? 0 : text_offset_length(prompt_text_));
  return r;
}

nlohmann::ordered_json ResponseBuilder::response() const {
  std::vector<size_t> order(choices_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  if (shape_.best_of > shape_.n) {  // the n most likely, the best first
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return choices_[a].sum_logprob > choices_[b].sum_logprob;
    });
    order.resize(size_t(shape_.n));
  }
  std::vector<ChoiceResult> out;
  int completion_tokens = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const Choice& c = choices_[order[i]];
    out.push_back(result(c, int(i)));
    completion_tokens += shape_.max_tokens_zero ? 0 : c.tokens;
  }
  return completion_response(meta_, out, prompt_tokens_, completion_tokens);
}

std::string ResponseBuilder::start() {
  std::string out;
  if (meta_.kind != ApiKind::Chat) return out;
  for (int i = 0; i < int(choices_.size()); ++i)
    out += sse_event(stream_chunk(meta_, "", "", true, shape_.include_usage, i));
  return out;
}

json ResponseBuilder::chunk_logprobs(const std::vector<LogprobToken>& toks, size_t offset) const {
  if (!shape_.want_logprobs) return nullptr;
  return meta_.kind == ApiKind::Chat ? chat_logprobs_json(toks)
                                     : completion_logprobs_json(toks, offset);
}

// Chat: the text delta through the choice's OutputStream; tool calls as their pieces come.
std::string ResponseBuilder::stream_chat(Choice& c, const StreamEvent& ev, int i) {
  const RequestOutput& o = ev.output;
  const bool u = shape_.include_usage;
  if (!c.out) c.out.emplace(format_);
  OutputStream::Delta d = c.out->add(o.text_delta);
  const bool end = o.finished && o.finish_reason != FinishReason::Abort;
  if (end) {
    OutputStream::Delta rest = c.out->finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    d.calls.insert(d.calls.end(), rest.calls.begin(), rest.calls.end());
  }
  std::string out;
  if (!d.reasoning.empty())
    out += sse_event(delta_chunk(meta_, {{"reasoning_content", d.reasoning}}, u, i));
  if (!d.content.empty() || !ev.logprobs.empty()) {
    nlohmann::json delta = nlohmann::json::object();
    if (!d.content.empty()) delta["content"] = d.content;
    out += sse_event(delta_chunk(meta_, delta, u, i, chunk_logprobs(ev.logprobs, 0)));
  }
  if (!d.calls.empty())
    out += sse_event(delta_chunk(meta_, {{"tool_calls", tool_call_deltas_json(d.calls)}}, u, i));
  if (end) {
    const bool calls = c.out->has_calls() && o.finish_reason == FinishReason::Stop;
    const std::string reason =
        calls ? std::string("tool_calls") : finish_reason_name(o.finish_reason);
    out += final_chunk(reason, o, i);
  }
  return out;
}

std::string ResponseBuilder::final_chunk(const std::string& reason, const RequestOutput& o,
                                         int i) const {
  nlohmann::json chunk = stream_chunk(meta_, "", reason, false, shape_.include_usage, i);
  chunk["choices"][0]["stop_reason"] = shape_.max_tokens_zero
                                           ? nlohmann::json(nullptr)
                                           : stop_reason(o.stop_string, o.stop_token_id);
  return sse_event(chunk);
}

std::string ResponseBuilder::stream(const StreamEvent& ev) {
  add(ev);
  const int i = ev.choice;
  Choice& c = choices_.at(size_t(i));
  if (meta_.kind == ApiKind::Chat) return stream_chat(c, ev, i);
  const RequestOutput& o = ev.output;
  const bool u = shape_.include_usage;
  std::string out;
  if (!c.started && shape_.echo) {  // the prompt first, with its log-probabilities
    out += sse_event(
        stream_chunk(meta_, prompt_text_, "", false, u, i, chunk_logprobs(prompt_tokens(), 0)));
  }
  c.started = true;
  if (!shape_.max_tokens_zero && (!o.text_delta.empty() || !ev.logprobs.empty())) {
    out += sse_event(
        stream_chunk(meta_, o.text_delta, "", false, u, i, chunk_logprobs(ev.logprobs, c.offset)));
    c.offset += tokens_text_size(ev.logprobs);
  }
  if (o.finished && o.finish_reason != FinishReason::Abort) {
    const std::string reason =
        shape_.max_tokens_zero ? std::string("length") : finish_reason_name(o.finish_reason);
    out += final_chunk(reason, o, i);
  }
  return out;
}

std::string ResponseBuilder::end() {
  std::string out;
  if (shape_.include_usage) {
    int completion_tokens = 0;
    for (const Choice& c : choices_) completion_tokens += shape_.max_tokens_zero ? 0 : c.tokens;
    out += sse_event(usage_chunk(meta_, prompt_tokens_, completion_tokens));
  }
  return out + kSseDone;
}

}  // namespace nc::server
