// ResponseBuilder: one generation request's events (engine_loop.h) turned into its OpenAI
// response, with n / best_of choices, echo and log-probabilities.
//
// Whole responses: add() every Output event until done(), then response(). With best_of > n the
// n choices with the highest summed log-probability of their tokens are returned (index 0 the
// best). Streams: start() (chat's role chunk per choice), then stream(ev) per Output event (the
// chunks it gives, each naming its choice's index; completions with echo start each choice with
// the prompt), then end() once done() (the usage chunk when asked, and [DONE]).
//
// Chat outputs are read with the Accepted event's OutputFormat: a <think> block becomes
// reasoning_content, tool calls tool_calls with finish_reason "tool_calls". Streams send
// reasoning_content and content deltas as they come and each tool call whole, in one delta
// (index, id, type, function name and the complete arguments), when the choice finishes.
//
// Echo with max_tokens 0 (completions): the engine computed one token that is not returned; the
// choice is the prompt alone, finish_reason "length", 0 completion tokens.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/engine_loop.h"
#include "server/openai_format.h"
#include "server/output_builder.h"
#include "server/request_parser.h"

namespace nc::server {

// What of the request the response needs (not the prompt).
struct ResponseShape {
  ApiKind kind = ApiKind::Chat;
  int n = 1;
  int best_of = 1;
  bool want_logprobs = false;
  bool echo = false;
  bool max_tokens_zero = false;
  bool include_usage = false;

  static ResponseShape of(const ParsedRequest& r);
};

class ResponseBuilder final : public OutputBuilder {
 public:
  ResponseBuilder(ResponseMeta meta, ResponseShape shape, const StreamEvent& accepted);

  void add(const StreamEvent& ev) override;  // an Output event
  bool done() const override { return unfinished_ == 0; }
  bool aborted() const override { return aborted_; }
  nlohmann::ordered_json response() const override;

  std::string start() override;
  std::string stream(const StreamEvent& ev) override;
  std::string end() override;
  // The error object as one event (OpenAI's way once the headers are out); then [DONE].
  std::string stream_error(const ApiError& e) override { return sse_event(e.to_json()); }
  std::string aborted_end() override { return kSseDone; }

 private:
  struct Choice {
    std::string text;
    std::vector<LogprobToken> logprobs;
    std::string finish_reason;
    std::string stop_string;     // the stop string that ended it (vLLM's stop_reason)
    int32_t stop_token_id = -1;  // else the stop token id that ended it (also vLLM's stop_reason)
    int tokens = 0;
    double sum_logprob = 0;
    bool started = false;             // stream: its first chunk went out
    size_t offset = 0;                // stream, completions: text offset of its next token
    std::optional<OutputStream> out;  // stream, chat: reasoning, content and tool calls
  };
  std::string stream_chat(Choice& c, const StreamEvent& ev, int i);
  // A choice's last chunk: its finish_reason, and vLLM's stop_reason.
  std::string final_chunk(const std::string& reason, const RequestOutput& o, int i) const;
  void take_prompt_logprobs(const StreamEvent& ev);
  std::vector<LogprobToken> prompt_tokens() const;
  ChoiceResult result(const Choice& c, int index) const;
  nlohmann::json chunk_logprobs(const std::vector<LogprobToken>& toks, size_t offset) const;

  ResponseMeta meta_;
  ResponseShape shape_;
  OutputFormat format_;  // chat: how to read the output (server/tool_calls.h)
  int prompt_tokens_ = 0;
  std::string prompt_text_;
  LogprobToken prompt_first_;
  std::vector<LogprobToken> prompt_rest_;  // the prompt tokens after the first
  std::vector<Choice> choices_;
  int unfinished_ = 0;
  bool aborted_ = false;
};

}  // namespace nc::server
