// ResponsesBuilder: one request's events (engine_loop.h) as the Responses API's answer
// (POST /v1/responses; the request side is server/responses_request.h).
//
// The answer is a `response` object whose `output` is a list of items, in the order the model
// wrote them: a `reasoning` item (the <think> block, as reasoning_text content), a `message`
// item (the answer's text as one output_text part, with its log-probabilities when asked), and
// one `function_call` item per tool call (call_id, name, arguments). The output is read with the
// chat API's rules (server/tool_calls.h): the same reasoning and call formats, held back and
// streamed the same way. status is "completed", or "incomplete" with incomplete_details.reason
// "max_output_tokens" when the token limit ended it (the item it cut short says "incomplete"
// too). A message's log-probabilities are those of the tokens of its text. usage counts input
// and output tokens (cached_tokens and reasoning_tokens are not counted: 0).
//
// Streams are typed server-sent events (`event: <type>` and `data: {"type", "sequence_number",
// ...}`): response.created and response.in_progress; per item output_item.added, its deltas
// (reasoning_text.delta; content_part.added then output_text.delta; function_call_arguments.delta)
// and their done events, then output_item.done; then response.completed (or
// response.incomplete) holding the whole response. An error after the headers is an `error`
// event, and an aborted request ends with response.failed. There is no [DONE] line.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/engine_loop.h"
#include "server/openai_format.h"
#include "server/output_builder.h"
#include "server/output_items.h"
#include "server/tool_calls.h"

namespace nc::server {

struct ResponsesMeta {
  std::string id;  // "resp_..."
  int64_t created_at = 0;
  std::string model;
  nlohmann::json echo;  // ResponsesRequest::echo
  bool want_logprobs = false;
  // Called once with the finished response (completed or incomplete; not a failed one), before
  // it goes out: it may set fields (the store says whether it kept it).
  std::function<void(nlohmann::json& response)> on_done;
};

class ResponsesBuilder final : public OutputBuilder, private OutputItems::Listener {
 public:
  ResponsesBuilder(ResponsesMeta meta, const StreamEvent& accepted);

  void add(const StreamEvent& ev) override;
  bool done() const override { return progress_.finished; }
  bool aborted() const override { return progress_.aborted; }
  // The items a stream of the same events ends with (the events replayed): whole and streamed
  // answers agree item for item.
  nlohmann::ordered_json response() const override;

  std::string start() override;
  std::string stream(const StreamEvent& ev) override;
  std::string end() override;
  std::string stream_error(const ApiError& e) override;
  std::string aborted_end() override;

 private:
  ResponsesBuilder(const ResponsesMeta& meta, OutputFormat format, int input_tokens);
  nlohmann::json envelope(const char* status, const nlohmann::json& output) const;
  nlohmann::json item_json(const OutputItem& it, const char* status) const;
  void event(nlohmann::json e);  // numbered, appended to events_
  std::string take_events();

  void opened(const OutputItem& it) override;
  void grew(const OutputItem& it, const std::string& delta,
            const std::vector<LogprobToken>& logprobs) override;
  void closed(const OutputItem& it) override;

  ResponsesMeta meta_;
  OutputFormat format_;
  int input_tokens_ = 0;
  OutputProgress progress_;
  std::vector<StreamEvent> whole_;  // whole answers: replayed by response()
  OutputItems items_;
  std::vector<std::string> ids_;  // the items' ids, by index
  int sequence_ = 0;
  std::string events_;  // written, not yet returned
  bool quiet_ = false;  // a whole answer's replay: its events are not written
  nlohmann::json streamed_ = nlohmann::json::array();  // the items closed so far
  nlohmann::json failure_;  // the error response.failed names (stream_error's)
};

}  // namespace nc::server
