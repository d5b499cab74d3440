// AnthropicBuilder: one request's events (engine_loop.h) as the Messages API's answer
// (POST /v1/messages; the request side is server/anthropic_request.h).
//
// The answer is a `message` whose `content` lists the output's blocks in the order the model
// wrote them (server/output_items.h): `thinking` (the <think> block; an empty signature, since
// nothing here signs it), `text`, and `tool_use` per call (its id, name and `input`, the
// arguments parsed as a JSON object). stop_reason: "max_tokens" when the limit ended it (a call
// it cut short included), else "tool_use" when there are calls, else "end_turn" (a stop sequence
// too: the engine does not say which of the two stopped it, so stop_sequence is always null).
// usage: input_tokens, output_tokens.
//
// Streams are server-sent events `event: <type>` / `data: {"type", ...}`: message_start, then
// per block content_block_start, its deltas (thinking_delta, text_delta, input_json_delta) and
// content_block_stop, then message_delta (stop_reason and usage) and message_stop. An error after
// the headers is an `error` event, and the stream ends there. The whole answer is the same
// events replayed, so the two agree block for block.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/engine_loop.h"
#include "server/output_builder.h"
#include "server/output_items.h"

namespace nc::server {

class AnthropicBuilder final : public OutputBuilder, private OutputItems::Listener {
 public:
  AnthropicBuilder(std::string id, std::string model, const StreamEvent& accepted);

  void add(const StreamEvent& ev) override;
  bool done() const override { return progress_.finished; }
  bool aborted() const override { return progress_.aborted; }
  nlohmann::ordered_json response() const override;

  std::string start() override;
  std::string stream(const StreamEvent& ev) override;
  std::string end() override;
  std::string stream_error(const ApiError& e) override;
  std::string aborted_end() override { return ""; }

 private:
  AnthropicBuilder(std::string id, std::string model, OutputFormat format, int input_tokens);
  nlohmann::ordered_json message(const nlohmann::ordered_json& content) const;
  const char* stop_reason() const;
  nlohmann::ordered_json stop_sequence() const;  // the matched stop string, or null
  void event(const nlohmann::ordered_json& e);
  std::string take_events();

  void opened(const OutputItem& it) override;
  void grew(const OutputItem& it, const std::string& delta,
            const std::vector<LogprobToken>& logprobs) override;
  void closed(const OutputItem& it) override;

  std::string id_, model_;
  OutputFormat format_;
  int input_tokens_ = 0;
  OutputProgress progress_;
  bool has_call_ = false;
  std::vector<StreamEvent> whole_;  // whole answers: replayed by response()
  OutputItems items_;
  std::string events_;
  bool quiet_ = false;  // a whole answer's replay: its events are not written
  nlohmann::ordered_json blocks_ = nlohmann::ordered_json::array();  // closed so far
};

}  // namespace nc::server
