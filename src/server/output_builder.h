// What turns one generation request's events (engine_loop.h) into its HTTP answer, whole or
// streamed: the chat and completions APIs' ResponseBuilder (server/response_builder.h) and the
// Responses API's ResponsesBuilder (server/responses_builder.h). The server's handlers drive it
// the same way for every API.
//
// Whole: add() every Output event until done(), then response(). Streams: start(), then
// stream(ev) per Output event until done(), then end(); an error after the headers went out is
// sent with stream_error(), and a stream whose request the engine aborted ends with
// aborted_end() instead of end().
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/engine_loop.h"

namespace nc::server {

class OutputBuilder {
 public:
  virtual ~OutputBuilder() = default;

  virtual void add(const StreamEvent& ev) = 0;  // an Output event
  virtual bool done() const = 0;
  virtual bool aborted() const = 0;
  // Ordered: a tool call's arguments keep the model's key order (Anthropic's `input` object).
  virtual nlohmann::ordered_json response() const = 0;

  virtual std::string start() = 0;
  virtual std::string stream(const StreamEvent& ev) = 0;
  virtual std::string end() = 0;
  virtual std::string stream_error(const ApiError& e) = 0;
  virtual std::string aborted_end() = 0;
};

}  // namespace nc::server
