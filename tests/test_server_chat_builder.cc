// The chat API's answer builder (server/response_builder.h) on fixed events: the finish_reason
// of an answer with tool calls, whole and streamed, and vLLM's stop_reason, as the Responses and
// Messages builders' tests check theirs.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/response_builder.h"
#include "server_harness.h"
#include "typed_events.h"

namespace nc::server {
namespace {

using json = nlohmann::json;

struct ChatAnswer {
  std::string whole_reason, streamed_reason;
  json whole_stop_reason, streamed_stop_reason;
};

// One chat answer over fixed events (Hermes tools): the whole response and the streamed body.
std::pair<json, std::string> chat_bodies(const std::vector<StreamEvent>& evs) {
  StreamEvent accepted;
  accepted.kind = StreamEvent::Kind::Accepted;
  accepted.num_prompt_tokens = 5;
  accepted.format = OutputFormat{ToolFormat::Hermes, false};
  const ResponseMeta meta{ApiKind::Chat, "chatcmpl-1", 0, "m"};
  ResponseBuilder whole(meta, ResponseShape{}, accepted), stream(meta, ResponseShape{}, accepted);
  const std::string body = test::whole_and_streamed(whole, stream, evs);
  return {whole.response(), body};
}

ChatAnswer chat_answer(const std::vector<StreamEvent>& evs) {
  const auto [w, body] = chat_bodies(evs);
  const test_server::Streamed s = test_server::collect(test_server::parse_sse(body), true);
  return {w["choices"][0]["finish_reason"], s.finish_reason, w["choices"][0]["stop_reason"],
          s.stop_reason};
}

const std::vector<std::string> kCall = {"<tool_call>\n{\"name\": \"f\", \"arguments\": {}}",
                                        "\n</tool_call>"};

TEST(ChatBuilder, CallsEndWithToolCallsUnlessTheLimitEndedIt) {
  ChatAnswer a = chat_answer(test::output_events(kCall, FinishReason::Stop));
  EXPECT_EQ(a.whole_reason, "tool_calls");
  EXPECT_EQ(a.streamed_reason, "tool_calls");
  std::vector<std::string> cut = kCall;
  cut.push_back("\nand then");
  a = chat_answer(test::output_events(cut, FinishReason::Length));
  EXPECT_EQ(a.whole_reason, "length");
  EXPECT_EQ(a.streamed_reason, "length");
}

TEST(ChatBuilder, StopReasonNamesTheStopString) {
  std::vector<StreamEvent> evs = test::output_events({"Hello", " there"}, FinishReason::Stop);
  evs.back().output.stop_string = "END";
  ChatAnswer a = chat_answer(evs);
  EXPECT_EQ(a.whole_stop_reason, "END");
  EXPECT_EQ(a.streamed_stop_reason, "END");
  a = chat_answer(test::output_events({"Hello"}, FinishReason::Stop));
  EXPECT_TRUE(a.whole_stop_reason.is_null());
  EXPECT_TRUE(a.streamed_stop_reason.is_null());
}

// A chunk names each call once (vLLM's shape): a call's start and its first argument bytes in
// one event make one entry, so a client that reads delta.tool_calls[0] loses nothing.
TEST(ChatBuilder, AStreamedChunkHasOneEntryPerCall) {
  const std::vector<std::string> pieces = {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\"",
                                           ": 1}}\n</tool_call>"};
  const std::string body = chat_bodies(test::output_events(pieces, FinishReason::Stop)).second;
  std::string arguments;
  int entries = 0;
  for (const json& ev : test_server::parse_sse(body).events) {
    const json& delta = ev["choices"][0]["delta"];
    if (!delta.contains("tool_calls")) continue;
    std::set<int> seen;
    for (const json& call : delta["tool_calls"]) {
      EXPECT_TRUE(seen.insert(call["index"].get<int>()).second) << "twice in one chunk: " << delta;
      arguments += call["function"]["arguments"].get<std::string>();
      ++entries;
    }
  }
  EXPECT_GT(entries, 0);
  EXPECT_EQ(json::parse(arguments), json::parse(R"({"a": 1})")) << arguments;
}

}  // namespace
}  // namespace nc::server
