#include "server/anthropic_builder.h"

#include <string_view>
#include <utility>

#include "server/anthropic_request.h"
#include "server/json_fields.h"

namespace nc::server {

using json = nlohmann::ordered_json;  // arguments keep their key order

namespace {

// A call's arguments as the `input` object; arguments that are no JSON object (a call the limit
// cut inside them) give {}, as the streamed input_json_delta fragments give a client.
json input_of(const std::string& arguments) {
  json j = parse_bounded(arguments);  // a model's text: bounded
  return j.is_object() ? j : json::object();
}

json block_of(const OutputItem& it) {
  switch (it.kind) {
    case OutputItem::Kind::Reasoning:
      return {{"type", "thinking"}, {"thinking", it.text}, {"signature", ""}};
    case OutputItem::Kind::Text:
      return {{"type", "text"}, {"text", it.text}};
    case OutputItem::Kind::Call:
      break;
  }
  return {
      {"type", "tool_use"}, {"id", it.call_id}, {"name", it.name}, {"input", input_of(it.text)}};
}

}  // namespace

AnthropicBuilder::AnthropicBuilder(std::string id, std::string model, const StreamEvent& accepted)
    : AnthropicBuilder(std::move(id), std::move(model), accepted.format,
                       accepted.num_prompt_tokens) {}

AnthropicBuilder::AnthropicBuilder(std::string id, std::string model, OutputFormat format,
                                   int input_tokens)
    : id_(std::move(id)),
      model_(std::move(model)),
      format_(format),
      input_tokens_(input_tokens),
      items_(format_, /*want_logprobs=*/false, *this) {}

void AnthropicBuilder::add(const StreamEvent& ev) {
  progress_.record(ev);
  whole_.push_back(ev);
}

const char* AnthropicBuilder::stop_reason() const {
  // A call the limit cut short is no call to run: max_tokens first, as Anthropic says it.
  if (progress_.finish == FinishReason::Length) return "max_tokens";
  if (has_call_) return "tool_use";
  return progress_.stop_string.empty() ? "end_turn" : "stop_sequence";
}

json AnthropicBuilder::stop_sequence() const {
  if (!progress_.finished || std::string_view(stop_reason()) != "stop_sequence") return nullptr;
  return progress_.stop_string;
}

json AnthropicBuilder::message(const json& content) const {
  return {{"id", id_},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model_},
          {"content", content},
          {"stop_reason", progress_.finished ? json(stop_reason()) : json(nullptr)},
          {"stop_sequence", stop_sequence()},
          {"usage", {{"input_tokens", input_tokens_}, {"output_tokens", progress_.output_tokens}}}};
}

json AnthropicBuilder::response() const {
  AnthropicBuilder replay(id_, model_, format_, input_tokens_);
  replay.quiet_ = true;
  for (const StreamEvent& ev : whole_) replay.stream(ev);
  replay.end();
  return replay.message(replay.blocks_);
}

void AnthropicBuilder::event(const json& e) {
  if (!quiet_) events_ += typed_sse_event(e);
}

std::string AnthropicBuilder::take_events() {
  return std::exchange(events_, std::string());
}

std::string AnthropicBuilder::start() {
  event({{"type", "message_start"}, {"message", message(json::array())}});
  return take_events();
}

void AnthropicBuilder::opened(const OutputItem& it) {
  has_call_ = has_call_ || it.kind == OutputItem::Kind::Call;
  json block = block_of(it);
  if (it.kind == OutputItem::Kind::Call) block["input"] = json::object();  // its JSON follows
  event({{"type", "content_block_start"}, {"index", it.index}, {"content_block", block}});
}

void AnthropicBuilder::grew(const OutputItem& it, const std::string& delta,
                            const std::vector<LogprobToken>&) {
  json d = it.kind == OutputItem::Kind::Reasoning
               ? json{{"type", "thinking_delta"}, {"thinking", delta}}
           : it.kind == OutputItem::Kind::Text
               ? json{{"type", "text_delta"}, {"text", delta}}
               : json{{"type", "input_json_delta"}, {"partial_json", delta}};
  event({{"type", "content_block_delta"}, {"index", it.index}, {"delta", std::move(d)}});
}

void AnthropicBuilder::closed(const OutputItem& it) {
  event({{"type", "content_block_stop"}, {"index", it.index}});
  blocks_.push_back(block_of(it));
}

std::string AnthropicBuilder::stream(const StreamEvent& ev) {
  progress_.record(ev);
  items_.add(ev);
  return take_events();
}

std::string AnthropicBuilder::end() {
  items_.finish();
  event({{"type", "message_delta"},
         {"delta", {{"stop_reason", stop_reason()}, {"stop_sequence", stop_sequence()}}},
         {"usage", {{"output_tokens", progress_.output_tokens}}}});
  event({{"type", "message_stop"}});
  return take_events();
}

std::string AnthropicBuilder::stream_error(const ApiError& e) {
  event(anthropic_error_json(e));
  return take_events();
}

}  // namespace nc::server
