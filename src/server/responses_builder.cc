#include "server/responses_builder.h"

#include <utility>

#include "server/responses_request.h"

namespace nc::server {

using json = nlohmann::json;

namespace {

json logprobs_array(const std::vector<LogprobToken>& tokens) {
  return chat_logprobs_json(tokens)["content"];
}

json output_text_part(const std::string& text, const std::vector<LogprobToken>& logprobs) {
  return {{"type", "output_text"},
          {"text", text},
          {"annotations", json::array()},
          {"logprobs", logprobs_array(logprobs)}};
}

json message_item(const std::string& id, const std::string& status, json content) {
  return {{"id", id},
          {"type", "message"},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

json reasoning_item(const std::string& id, json content) {
  return {{"id", id}, {"type", "reasoning"}, {"summary", json::array()}, {"content", content}};
}

json reasoning_part(const std::string& text) {
  return {{"type", "reasoning_text"}, {"text", text}};
}

json reasoning_content(const std::string& text) {
  return json::array({reasoning_part(text)});
}

json call_item(const std::string& id, const std::string& status, const std::string& call_id,
               const std::string& name, const std::string& arguments) {
  return {{"id", id},     {"type", "function_call"}, {"status", status}, {"call_id", call_id},
          {"name", name}, {"arguments", arguments}};
}

const char* final_status(FinishReason f) {
  return f == FinishReason::Length ? "incomplete" : "completed";
}

}  // namespace

ResponsesBuilder::ResponsesBuilder(ResponsesMeta meta, const StreamEvent& accepted)
    : meta_(std::move(meta)),
      format_(accepted.format),
      input_tokens_(accepted.num_prompt_tokens),
      trims_(format_.tools != ToolFormat::None || format_.starts_in_think) {}

ResponsesBuilder::ResponsesBuilder(const ResponsesMeta& meta, OutputFormat format, int input_tokens)
    : meta_(meta),
      format_(format),
      input_tokens_(input_tokens),
      trims_(format_.tools != ToolFormat::None || format_.starts_in_think) {}

void ResponsesBuilder::record(const StreamEvent& ev) {
  const RequestOutput& o = ev.output;
  if (!o.finished) return;
  finished_ = true;
  finish_ = o.finish_reason;
  aborted_ = o.finish_reason == FinishReason::Abort;
  output_tokens_ = o.num_completion_tokens;
}

void ResponsesBuilder::add(const StreamEvent& ev) {
  record(ev);
  events_.push_back(ev);
}

json ResponsesBuilder::envelope(const char* status, const json& output) const {
  json r = {{"id", meta_.id},
            {"object", "response"},
            {"created_at", meta_.created_at},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"model", meta_.model},
            {"output", output},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"truncation", "disabled"},
            {"usage", nullptr}};
  for (const auto& [k, v] : meta_.echo.items()) r[k] = v;
  if (std::string(status) == "incomplete")
    r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  if (finished_) {
    r["usage"] = {{"input_tokens", input_tokens_},
                  {"input_tokens_details", {{"cached_tokens", 0}}},
                  {"output_tokens", output_tokens_},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", input_tokens_ + output_tokens_}};
  }
  return r;
}

json ResponsesBuilder::response() const {
  ResponsesMeta m = meta_;
  m.on_done = nullptr;  // called here, once
  ResponsesBuilder replay(m, format_, input_tokens_);
  for (const StreamEvent& ev : events_) replay.stream(ev);
  replay.end();
  json r = replay.envelope(final_status(finish_), replay.streamed_);
  if (meta_.on_done) meta_.on_done(r);
  return r;
}

std::string ResponsesBuilder::event(json e) {
  e["sequence_number"] = sequence_++;
  return "event: " + e["type"].get<std::string>() + "\ndata: " + dump_json(e) + "\n\n";
}

std::string ResponsesBuilder::start() {
  const json r = envelope("in_progress", json::array());
  std::string s = event({{"type", "response.created"}, {"response", r}});
  return s + event({{"type", "response.in_progress"}, {"response", r}});
}

std::string ResponsesBuilder::open(ItemKind kind, std::string call_id, std::string name,
                                   int index) {
  const char* prefix = kind == ItemKind::Reasoning ? "rs_"
                       : kind == ItemKind::Message ? "msg_"
                                                   : "fc_";
  open_ = OpenItem{kind, random_id(prefix), "", {}, std::move(call_id), std::move(name), index};
  has_message_ = has_message_ || kind == ItemKind::Message;
  has_call_ = has_call_ || kind == ItemKind::Call;
  const OpenItem& it = *open_;
  json item = kind == ItemKind::Reasoning ? reasoning_item(it.id, json::array())
              : kind == ItemKind::Message
                  ? message_item(it.id, "in_progress", json::array())
                  : call_item(it.id, "in_progress", it.call_id, it.name, "");
  std::string s = event(
      {{"type", "response.output_item.added"}, {"output_index", output_index()}, {"item", item}});
  if (kind == ItemKind::Call) return s;
  return s + event({{"type", "response.content_part.added"},
                    {"item_id", it.id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"part",
                     kind == ItemKind::Message ? output_text_part("", {}) : reasoning_part("")}});
}

// The open item as it stands (status: a message's or a call's).
json ResponsesBuilder::open_item_as_is(const char* status) const {
  const OpenItem& it = *open_;
  if (it.kind == ItemKind::Reasoning) return reasoning_item(it.id, reasoning_content(it.text));
  if (it.kind == ItemKind::Message)
    return message_item(it.id, status, json::array({output_text_part(it.text, it.logprobs)}));
  return call_item(it.id, status, it.call_id, it.name, it.text);
}

std::string ResponsesBuilder::close() {
  if (!open_) return "";
  const OpenItem& it = *open_;
  const json at = {{"item_id", it.id}, {"output_index", output_index()}};
  auto at_with = [&](json fields) {
    json e = at;
    e.update(fields);
    return e;
  };
  // The item the token limit cut short is incomplete, as OpenAI marks it.
  const json item =
      open_item_as_is(finished_ && finish_ == FinishReason::Length ? "incomplete" : "completed");
  std::string s;
  if (it.kind == ItemKind::Reasoning) {
    s += event(at_with(
        {{"type", "response.reasoning_text.done"}, {"content_index", 0}, {"text", it.text}}));
    s += event(at_with({{"type", "response.content_part.done"},
                        {"content_index", 0},
                        {"part", reasoning_part(it.text)}}));
  } else if (it.kind == ItemKind::Message) {
    const json& part = item["content"][0];
    s += event(at_with({{"type", "response.output_text.done"},
                        {"content_index", 0},
                        {"text", it.text},
                        {"logprobs", part["logprobs"]}}));
    s += event(
        at_with({{"type", "response.content_part.done"}, {"content_index", 0}, {"part", part}}));
  } else {
    s += event(at_with({{"type", "response.function_call_arguments.done"},
                        {"name", it.name},
                        {"arguments", it.text}}));
  }
  s += event(
      {{"type", "response.output_item.done"}, {"output_index", output_index()}, {"item", item}});
  streamed_.push_back(item);
  open_.reset();
  return s;
}

std::string ResponsesBuilder::add_reasoning(const std::string& text) {
  std::string s;
  if (!open_ || open_->kind != ItemKind::Reasoning) {
    s = close();
    s += open(ItemKind::Reasoning);
  }
  open_->text += text;
  pending_.clear();  // the reasoning's tokens
  held_space_.clear();
  trims_ = true;  // the chat API trims the answer after a reasoning block
  return s + event({{"type", "response.reasoning_text.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"delta", text}});
}

// Where the output is read (tools, or a reasoning block), a message's text is trimmed as the chat
// API's message is: blanks before it are dropped, and blanks at its end are held until more text
// comes (dropped before a call and at the end), so "\n\n<tool_call>..." makes no message of
// blanks. Elsewhere the text goes out as the model wrote it.
std::string ResponsesBuilder::add_content(const std::string& text) {
  constexpr const char* kSpace = " \t\n\r\f\v";
  const bool in_message = open_ && open_->kind == ItemKind::Message;
  std::string body = text, tail;
  if (trims_) {
    const size_t last = text.find_last_not_of(kSpace);
    if (last == std::string::npos) {
      if (in_message) held_space_ += text;
      return "";
    }
    body = text.substr(0, last + 1);
    tail = text.substr(last + 1);
  }
  std::string s;
  if (!in_message) {
    s = close();
    s += open(ItemKind::Message);
    held_space_.clear();
    if (trims_) body.erase(0, body.find_first_not_of(kSpace));
  }
  const std::string delta = held_space_ + body;
  held_space_ = tail;
  open_->text += delta;
  open_->logprobs.insert(open_->logprobs.end(), pending_.begin(), pending_.end());
  const json logprobs = logprobs_array(pending_);
  pending_.clear();
  return s + event({{"type", "response.output_text.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"delta", delta},
                    {"logprobs", logprobs}});
}

std::string ResponsesBuilder::add_call(const ToolCallDelta& d) {
  std::string s;
  if (d.first || !open_ || open_->kind != ItemKind::Call || open_->call_index != d.index) {
    s = close();
    s += open(ItemKind::Call, d.id, d.name, d.index);
  }
  pending_.clear();  // the call's tokens
  held_space_.clear();
  if (d.arguments.empty()) return s;
  open_->text += d.arguments;
  return s + event({{"type", "response.function_call_arguments.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"delta", d.arguments}});
}

std::string ResponsesBuilder::stream(const StreamEvent& ev) {
  record(ev);
  if (!out_) out_.emplace(format_);
  OutputStream::Delta d = out_->add(ev.output.text_delta);
  if (ev.output.finished && !aborted_) {
    OutputStream::Delta rest = out_->finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    d.calls.insert(d.calls.end(), rest.calls.begin(), rest.calls.end());
  }
  if (meta_.want_logprobs) pending_.insert(pending_.end(), ev.logprobs.begin(), ev.logprobs.end());
  std::string s;
  if (!d.reasoning.empty()) s += add_reasoning(d.reasoning);
  if (!d.content.empty()) s += add_content(d.content);
  for (const ToolCallDelta& c : d.calls) s += add_call(c);
  return s;
}

std::string ResponsesBuilder::end() {
  if (open_ && open_->kind == ItemKind::Message)  // tokens whose text was all sent before
    open_->logprobs.insert(open_->logprobs.end(), pending_.begin(), pending_.end());
  std::string s = close();
  if (!has_message_ && !has_call_) {  // reasoning alone, or nothing: an empty message too
    s += open(ItemKind::Message);
    s += close();
  }
  const char* status = final_status(finish_);
  const json r = envelope(status, streamed_);
  if (meta_.on_done) meta_.on_done(r);
  return s + event({{"type", std::string("response.") + status}, {"response", r}});
}

std::string ResponsesBuilder::stream_error(const ApiError& e) {
  const json err = as_responses_error(e).to_json()["error"];
  failure_ = {{"code", err["code"].is_null() ? json(err["type"]) : err["code"]},
              {"message", err["message"]}};
  return event({{"type", "error"},
                {"code", err["code"]},
                {"message", err["message"]},
                {"param", err["param"]}});
}

std::string ResponsesBuilder::aborted_end() {
  json output = streamed_;
  if (open_) {  // cut short: listed as it stands, with no done events after the error
    output.push_back(open_item_as_is("incomplete"));
    open_.reset();
  }
  json r = envelope("failed", output);
  r["error"] = failure_.is_null() ? json{{"code", "server_error"},
                                         {"message", "the request was aborted by the engine"}}
                                  : failure_;
  return event({{"type", "response.failed"}, {"response", std::move(r)}});
}

}  // namespace nc::server
