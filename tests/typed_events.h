// Test helpers for the answer builders (server/output_builder.h):
// a request's Accepted and Output events made from text pieces, the same events fed to a whole and
// a streaming builder, and the typed SSE events of a stream body, each checked to be well formed
// and to name its type in both lines.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/engine_loop.h"
#include "server/output_builder.h"

namespace nc::test {

// The Accepted event an answer starts with: the prompt's tokens and the output's tool format.
inline server::StreamEvent accepted_event(server::ToolFormat tools, int prompt_tokens) {
  server::StreamEvent ev;
  ev.kind = server::StreamEvent::Kind::Accepted;
  ev.num_prompt_tokens = prompt_tokens;
  ev.format = server::OutputFormat{tools, false};
  return ev;
}

// One Output event per piece, a token each; the last finishes with `end`.
inline std::vector<server::StreamEvent> output_events(const std::vector<std::string>& pieces,
                                                      FinishReason end) {
  std::vector<server::StreamEvent> evs;
  for (size_t i = 0; i < pieces.size(); ++i) {
    server::StreamEvent ev;
    ev.output.text_delta = pieces[i];
    ev.output.finished = i + 1 == pieces.size();
    ev.output.finish_reason = ev.output.finished ? end : FinishReason::None;
    ev.output.num_completion_tokens = int(i + 1);
    evs.push_back(ev);
  }
  return evs;
}

// The same events into two builders: `whole` by add(), `stream` as the server streams them.
// Returns the stream's body (start, one piece per event, end).
inline std::string whole_and_streamed(server::OutputBuilder& whole, server::OutputBuilder& stream,
                                      const std::vector<server::StreamEvent>& evs) {
  std::string body = stream.start();
  for (const server::StreamEvent& ev : evs) {
    whole.add(ev);
    body += stream.stream(ev);
  }
  return body + stream.end();
}

// The data objects of "event: <type>\ndata: <json>\n\n" events, in order.
inline std::vector<nlohmann::json> typed_sse_events(const std::string& body) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "unterminated event: " << body.substr(pos);
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    const size_t nl = ev.find('\n');
    EXPECT_TRUE(ev.starts_with("event: ") && nl != std::string::npos) << ev;
    if (nl == std::string::npos) continue;
    nlohmann::json data = nlohmann::json::parse(ev.substr(nl + 1 + std::string("data: ").size()));
    EXPECT_EQ(data["type"], ev.substr(7, nl - 7));
    out.push_back(std::move(data));
  }
  return out;
}

}  // namespace nc::test
