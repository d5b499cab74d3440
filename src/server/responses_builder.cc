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
    : ResponsesBuilder(meta, accepted.format, accepted.num_prompt_tokens) {}

ResponsesBuilder::ResponsesBuilder(const ResponsesMeta& meta, OutputFormat format, int input_tokens)
    : meta_(meta),
      format_(format),
      input_tokens_(input_tokens),
      items_(format_, meta_.want_logprobs, *this) {}

void ResponsesBuilder::add(const StreamEvent& ev) {
  progress_.record(ev);
  whole_.push_back(ev);
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
  if (progress_.finished) {
    r["usage"] = {{"input_tokens", input_tokens_},
                  {"input_tokens_details", {{"cached_tokens", 0}}},
                  {"output_tokens", progress_.output_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", input_tokens_ + progress_.output_tokens}};
  }
  return r;
}

nlohmann::ordered_json ResponsesBuilder::response() const {
  ResponsesMeta m = meta_;
  m.on_done = nullptr;  // called here, once
  ResponsesBuilder replay(m, format_, input_tokens_);
  replay.quiet_ = true;
  for (const StreamEvent& ev : whole_) replay.stream(ev);
  replay.end();
  json r = replay.envelope(final_status(progress_.finish), replay.streamed_);
  if (meta_.on_done) meta_.on_done(r);
  return r;
}

void ResponsesBuilder::event(json e) {
  if (quiet_) return;
  e["sequence_number"] = sequence_++;
  events_ += typed_sse_event(e);
}

std::string ResponsesBuilder::take_events() {
  return std::exchange(events_, std::string());
}

std::string ResponsesBuilder::start() {
  const json r = envelope("in_progress", json::array());
  event({{"type", "response.created"}, {"response", r}});
  event({{"type", "response.in_progress"}, {"response", r}});
  return take_events();
}

json ResponsesBuilder::item_json(const OutputItem& it, const char* status) const {
  const std::string& id = ids_.at(size_t(it.index));
  switch (it.kind) {
    case OutputItem::Kind::Reasoning:
      return reasoning_item(id, reasoning_content(it.text));
    case OutputItem::Kind::Text:
      return message_item(id, status, json::array({output_text_part(it.text, it.logprobs)}));
    case OutputItem::Kind::Call:
      break;
  }
  return call_item(id, status, it.call_id, it.name, it.text);
}

void ResponsesBuilder::opened(const OutputItem& it) {
  using K = OutputItem::Kind;
  ids_.push_back(random_id(it.kind == K::Reasoning ? "rs_" : it.kind == K::Text ? "msg_" : "fc_"));
  const std::string& id = ids_.back();
  json item = it.kind == K::Reasoning ? reasoning_item(id, json::array())
              : it.kind == K::Text    ? message_item(id, "in_progress", json::array())
                                      : call_item(id, "in_progress", it.call_id, it.name, "");
  event({{"type", "response.output_item.added"}, {"output_index", it.index}, {"item", item}});
  if (it.kind == K::Call) return;
  event({{"type", "response.content_part.added"},
         {"item_id", id},
         {"output_index", it.index},
         {"content_index", 0},
         {"part", it.kind == K::Text ? output_text_part("", {}) : reasoning_part("")}});
}

void ResponsesBuilder::grew(const OutputItem& it, const std::string& delta,
                            const std::vector<LogprobToken>& logprobs) {
  json e = {{"item_id", ids_.at(size_t(it.index))}, {"output_index", it.index}, {"delta", delta}};
  if (it.kind == OutputItem::Kind::Call) {
    e["type"] = "response.function_call_arguments.delta";
  } else {
    e["content_index"] = 0;
    e["type"] = it.kind == OutputItem::Kind::Text ? "response.output_text.delta"
                                                  : "response.reasoning_text.delta";
    if (it.kind == OutputItem::Kind::Text) e["logprobs"] = logprobs_array(logprobs);
  }
  event(std::move(e));
}

void ResponsesBuilder::closed(const OutputItem& it) {
  // The item the token limit cut short is incomplete, as OpenAI marks it.
  const json item = item_json(it, it.cut ? "incomplete" : "completed");
  const json at = {{"item_id", ids_.at(size_t(it.index))}, {"output_index", it.index}};
  auto at_with = [&](json fields) {
    json e = at;
    e.update(fields);
    return e;
  };
  if (it.kind == OutputItem::Kind::Reasoning) {
    event(at_with(
        {{"type", "response.reasoning_text.done"}, {"content_index", 0}, {"text", it.text}}));
    event(at_with({{"type", "response.content_part.done"},
                   {"content_index", 0},
                   {"part", reasoning_part(it.text)}}));
  } else if (it.kind == OutputItem::Kind::Text) {
    const json& part = item["content"][0];
    event(at_with({{"type", "response.output_text.done"},
                   {"content_index", 0},
                   {"text", it.text},
                   {"logprobs", part["logprobs"]}}));
    event(at_with({{"type", "response.content_part.done"}, {"content_index", 0}, {"part", part}}));
  } else {
    event(at_with({{"type", "response.function_call_arguments.done"},
                   {"name", it.name},
                   {"arguments", it.text}}));
  }
  event({{"type", "response.output_item.done"}, {"output_index", it.index}, {"item", item}});
  streamed_.push_back(item);
}

std::string ResponsesBuilder::stream(const StreamEvent& ev) {
  progress_.record(ev);
  items_.add(ev);
  return take_events();
}

std::string ResponsesBuilder::end() {
  items_.finish();
  const char* status = final_status(progress_.finish);
  json r = envelope(status, streamed_);
  if (meta_.on_done) meta_.on_done(r);
  event({{"type", std::string("response.") + status}, {"response", r}});
  return take_events();
}

std::string ResponsesBuilder::stream_error(const ApiError& e) {
  const json err = as_responses_error(e).to_json()["error"];
  failure_ = {{"code", err["code"].is_null() ? json(err["type"]) : err["code"]},
              {"message", err["message"]}};
  event({{"type", "error"},
         {"code", err["code"]},
         {"message", err["message"]},
         {"param", err["param"]}});
  return take_events();
}

std::string ResponsesBuilder::aborted_end() {
  json output = streamed_;
  if (const OutputItem* it = items_.open_item())  // cut short: as it stands, no done events
    output.push_back(item_json(*it, "incomplete"));
  json r = envelope("failed", output);
  r["error"] = failure_.is_null() ? json{{"code", "server_error"},
                                         {"message", "the request was aborted by the engine"}}
                                  : failure_;
  event({{"type", "response.failed"}, {"response", std::move(r)}});
  return take_events();
}

}  // namespace nc::server
