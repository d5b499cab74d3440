#include "server/responses_builder.h"

#include <utility>

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

json reasoning_content(const std::string& text) {
  return json::array({{{"type", "reasoning_text"}, {"text", text}}});
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
    : meta_(std::move(meta)), format_(accepted.format), input_tokens_(accepted.num_prompt_tokens) {}

void ResponsesBuilder::add(const StreamEvent& ev) {
  const RequestOutput& o = ev.output;
  text_ += o.text_delta;
  if (meta_.want_logprobs)
    logprobs_.insert(logprobs_.end(), ev.logprobs.begin(), ev.logprobs.end());
  if (!o.finished) return;
  finished_ = true;
  finish_ = o.finish_reason;
  aborted_ = o.finish_reason == FinishReason::Abort;
  output_tokens_ = o.num_completion_tokens;
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

json ResponsesBuilder::finished_items() const {
  const ParsedOutput p = parse_output(text_, format_);
  json items = json::array();
  if (!p.reasoning.empty())
    items.push_back(reasoning_item(random_id("rs_"), reasoning_content(p.reasoning)));
  if (!p.content.empty() || p.calls.empty()) {
    items.push_back(message_item(random_id("msg_"), "completed",
                                 json::array({output_text_part(p.content, logprobs_)})));
  }
  for (const ToolCall& c : p.calls)
    items.push_back(call_item(random_id("fc_"), "completed", c.id, c.name, c.arguments));
  return items;
}

json ResponsesBuilder::response() const {
  return envelope(final_status(finish_), finished_items());
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
  const OpenItem& it = *open_;
  json item = kind == ItemKind::Reasoning ? reasoning_item(it.id, json::array())
              : kind == ItemKind::Message
                  ? message_item(it.id, "in_progress", json::array())
                  : call_item(it.id, "in_progress", it.call_id, it.name, "");
  std::string s = event(
      {{"type", "response.output_item.added"}, {"output_index", output_index()}, {"item", item}});
  if (kind != ItemKind::Message) return s;
  return s + event({{"type", "response.content_part.added"},
                    {"item_id", it.id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"part", output_text_part("", {})}});
}

std::string ResponsesBuilder::close() {
  if (!open_) return "";
  const OpenItem& it = *open_;
  const json at = {{"item_id", it.id}, {"output_index", output_index()}};
  std::string s;
  json item;
  if (it.kind == ItemKind::Reasoning) {
    json e = at;
    e.update({{"type", "response.reasoning_text.done"}, {"content_index", 0}, {"text", it.text}});
    s += event(std::move(e));
    item = reasoning_item(it.id, reasoning_content(it.text));
  } else if (it.kind == ItemKind::Message) {
    const json part = output_text_part(it.text, it.logprobs);
    json e = at;
    e.update({{"type", "response.output_text.done"},
              {"content_index", 0},
              {"text", it.text},
              {"logprobs", part["logprobs"]}});
    s += event(std::move(e));
    e = at;
    e.update({{"type", "response.content_part.done"}, {"content_index", 0}, {"part", part}});
    s += event(std::move(e));
    item = message_item(it.id, "completed", json::array({part}));
  } else {
    json e = at;
    e.update({{"type", "response.function_call_arguments.done"},
              {"name", it.name},
              {"arguments", it.text}});
    s += event(std::move(e));
    item = call_item(it.id, "completed", it.call_id, it.name, it.text);
  }
  s += event(
      {{"type", "response.output_item.done"}, {"output_index", output_index()}, {"item", item}});
  streamed_.push_back(std::move(item));
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
  return s + event({{"type", "response.reasoning_text.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"delta", text}});
}

std::string ResponsesBuilder::add_content(const std::string& text,
                                          const std::vector<LogprobToken>& logprobs) {
  std::string s;
  if (!open_ || open_->kind != ItemKind::Message) {
    s = close();
    s += open(ItemKind::Message);
  }
  open_->text += text;
  open_->logprobs.insert(open_->logprobs.end(), logprobs.begin(), logprobs.end());
  return s + event({{"type", "response.output_text.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"content_index", 0},
                    {"delta", text},
                    {"logprobs", logprobs_array(logprobs)}});
}

std::string ResponsesBuilder::add_call(const ToolCallDelta& d) {
  std::string s;
  if (d.first || !open_ || open_->kind != ItemKind::Call || open_->call_index != d.index) {
    s = close();
    s += open(ItemKind::Call, d.id, d.name, d.index);
  }
  if (d.arguments.empty()) return s;
  open_->text += d.arguments;
  return s + event({{"type", "response.function_call_arguments.delta"},
                    {"item_id", open_->id},
                    {"output_index", output_index()},
                    {"delta", d.arguments}});
}

std::string ResponsesBuilder::stream(const StreamEvent& ev) {
  add(ev);
  if (!out_) out_.emplace(format_);
  OutputStream::Delta d = out_->add(ev.output.text_delta);
  if (ev.output.finished && !aborted_) {
    OutputStream::Delta rest = out_->finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    d.calls.insert(d.calls.end(), rest.calls.begin(), rest.calls.end());
  }
  // Log-probabilities ride on the next text delta (text may be held back while they arrive).
  if (meta_.want_logprobs) pending_.insert(pending_.end(), ev.logprobs.begin(), ev.logprobs.end());
  std::string s;
  if (!d.reasoning.empty()) s += add_reasoning(d.reasoning);
  if (!d.content.empty()) {
    s += add_content(d.content, pending_);
    pending_.clear();
  }
  for (const ToolCallDelta& c : d.calls) s += add_call(c);
  return s;
}

std::string ResponsesBuilder::end() {
  std::string s = close();
  if (streamed_.empty()) {  // an empty answer: one empty message, as the whole response has
    s += open(ItemKind::Message);
    s += close();
  }
  const char* status = final_status(finish_);
  return s + event({{"type", std::string("response.") + status},
                    {"response", envelope(status, streamed_)}});
}

std::string ResponsesBuilder::stream_error(const ApiError& e) {
  const json err = e.to_json()["error"];
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
    const OpenItem& it = *open_;
    output.push_back(it.kind == ItemKind::Reasoning
                         ? reasoning_item(it.id, reasoning_content(it.text))
                     : it.kind == ItemKind::Message
                         ? message_item(it.id, "incomplete",
                                        json::array({output_text_part(it.text, it.logprobs)}))
                         : call_item(it.id, "incomplete", it.call_id, it.name, it.text));
    open_.reset();
  }
  json r = envelope("failed", output);
  r["error"] = failure_.is_null() ? json{{"code", "server_error"},
                                         {"message", "the request was aborted by the engine"}}
                                  : failure_;
  return event({{"type", "response.failed"}, {"response", std::move(r)}});
}

}  // namespace nc::server
