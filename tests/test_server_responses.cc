// POST /v1/responses (server/responses_request.h, server/responses_builder.h): the request read
// as its chat equivalent, field by field and error by error; the output items and the typed
// stream built from known event sequences (reasoning, text, tool calls); and end to end on the
// fake model, against the same conversation run alone through the engine.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/responses_builder.h"
#include "server/responses_request.h"
#include "server_harness.h"
#include "typed_events.h"

namespace nc {
namespace {

using namespace server;  // NOLINT: the suite's subject
using json = nlohmann::json;

ParsedRequest chat_of(const json& body) {
  return parse_responses_request(body.dump()).chat;
}

// The ApiError a body gives (status 0 when it parses).
ApiError error_of(const json& body) {
  try {
    parse_responses_request(body.dump());
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "", "");
}

TEST(ResponsesRequest, InstructionsAndInputBecomeMessages) {
  ParsedRequest r = chat_of({{"instructions", "Be brief."},
                             {"input", "hi"},
                             {"max_output_tokens", 7},
                             {"temperature", 0}});
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].role, "user");
  EXPECT_EQ(r.messages[1].content, "hi");
  EXPECT_EQ(r.sampling.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.n, 1);

  r = chat_of(
      {{"input",
        {{{"role", "developer"}, {"content", "rules"}},
         {{"type", "message"},
          {"role", "user"},
          {"content",
           {{{"type", "input_text"}, {"text", "a"}}, {{"type", "input_text"}, {"text", "b"}}}}},
         {{"role", "assistant"}, {"content", {{{"type", "output_text"}, {"text", "c"}}}}},
         {{"type", "reasoning"}, {"summary", json::array()}}}}});
  ASSERT_EQ(r.messages.size(), 3u);         // the reasoning item is skipped
  EXPECT_EQ(r.messages[0].role, "system");  // developer, as chat reads it
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "c");

  // An image part reads as a placeholder (a refused turn would fail every later request).
  r = chat_of({{"input",
                {{{"role", "user"},
                  {"content",
                   {{{"type", "input_image"}, {"image_url", "data:image/png;base64,AAAA"}},
                    {{"type", "input_text"}, {"text", "what is this?"}}}}}}}});
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].content,
            "[input_image omitted: this model reads text only]\nwhat is this?");
}

TEST(ResponsesRequest, FunctionCallsAndOutputsBecomeToolTurns) {
  const json params = {
      {"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}};
  const ParsedRequest r =
      chat_of({{"tools", {{{"type", "function"}, {"name", "weather"}, {"parameters", params}}}},
               {"tool_choice", {{"type", "function"}, {"name", "weather"}}},
               {"input",
                {{{"role", "user"}, {"content", "Paris?"}},
                 {{"type", "function_call"},
                  {"call_id", "call_1"},
                  {"name", "weather"},
                  {"arguments", R"({"city":"Paris"})"}},
                 {{"type", "function_call"},
                  {"call_id", "call_2"},
                  {"name", "weather"},
                  {"arguments", R"({"city":"Lyon"})"}},
                 {{"type", "function_call_output"}, {"call_id", "call_1"}, {"output", "sunny"}},
                 {{"type", "function_call_output"}, {"call_id", "call_2"}, {"output", "rain"}}}}});
  ASSERT_TRUE(r.tools.active);
  EXPECT_EQ(r.tools.choice, ToolChoiceKind::Named);
  EXPECT_EQ(r.tools.choice_name, "weather");
  ASSERT_EQ(r.tools.tools.size(), 1u);
  EXPECT_EQ(r.tools.tools[0]["function"]["name"], "weather");
  EXPECT_EQ(json::parse(r.tools.tools[0]["function"]["parameters"].dump()), params);
  const auto& m = r.tools.messages;
  ASSERT_EQ(m.size(), 4u);  // user, one assistant turn with both calls, two tool turns
  EXPECT_EQ(m[1]["role"], "assistant");
  ASSERT_EQ(m[1]["tool_calls"].size(), 2u);
  EXPECT_EQ(m[1]["tool_calls"][1]["id"], "call_2");
  EXPECT_EQ(m[1]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
  EXPECT_EQ(m[2]["role"], "tool");
  EXPECT_EQ(m[2]["tool_call_id"], "call_1");
  EXPECT_EQ(m[3]["content"], "rain");
}

TEST(ResponsesRequest, TextFormatAndLogprobsMapToChatFields) {
  ParsedRequest r = chat_of(
      {{"input", "x"},
       {"text",
        {{"format", {{"type", "json_schema"}, {"name", "a"}, {"schema", {{"type", "object"}}}}}}}});
  EXPECT_EQ(r.sampling.structured.kind, StructuredOutput::Kind::JsonSchema);
  EXPECT_EQ(r.structured_param, "response_format");
  r = chat_of({{"input", "x"}, {"text", {{"format", {{"type", "json_object"}}}}}});
  EXPECT_EQ(r.sampling.structured.kind, StructuredOutput::Kind::Json);
  r = chat_of({{"input", "x"}, {"text", {{"format", {{"type", "text"}}}}}});
  EXPECT_FALSE(r.sampling.structured.active());
  r = chat_of({{"input", "x"}, {"top_logprobs", 3}});
  EXPECT_TRUE(r.want_logprobs);
  EXPECT_EQ(r.sampling.logprobs, 3);
  r = chat_of({{"input", "x"}, {"include", {"message.output_text.logprobs"}}});
  EXPECT_TRUE(r.want_logprobs);
  EXPECT_FALSE(chat_of({{"input", "x"}}).want_logprobs);
}

TEST(ResponsesRequest, ErrorsNameTheResponsesField) {
  struct Case {
    json body;
    const char* param;
    const char* code;
  };
  const std::vector<Case> cases = {
      {{{"input", "x"}, {"previous_response_id", "resp_1"}},
       "previous_response_id",
       "unsupported_parameter"},
      {{{"input", "x"}, {"background", true}}, "background", "unsupported_parameter"},
      {{{"input", "x"}, {"conversation", "c"}}, "conversation", "unsupported_parameter"},
      {{{"model", "m"}}, "input", ""},
      {{{"input", json::array()}}, "input", ""},
      {{{"input", {{{"role", "robot"}, {"content", "x"}}}}}, "input[0].role", ""},
      {{{"input", {{{"type", "function_call"}, {"name", "f"}}}}}, "input[0].call_id", ""},
      {{{"input", {{{"type", "item_reference"}, {"id", "x"}}}}},
       "input[0].type",
       "unsupported_parameter"},
      {{{"input", {{{"role", "user"}, {"content", {{{"type", "input_video"}}}}}}}},
       "input[0].content[0].type",
       ""},
      {{{"input", "x"}, {"tools", {{{"type", "web_search"}}}}},
       "tools[0].type",
       "unsupported_parameter"},
      {{{"input", "x"}, {"tools", {{{"type", "function"}}}}}, "tools[0].name", ""},
      {{{"input", "x"}, {"max_output_tokens", 0}}, "max_output_tokens", ""},
      {{{"input", "x"}, {"text", {{"format", {{"type", "yaml"}}}}}}, "text.format.type", ""},
      {{{"input", "x"}, {"include", {"file_search_call.results"}}},
       "include[0]",
       "unsupported_parameter"},
      {{{"input", "x"}, {"n", 2}}, "n", "unsupported_parameter"},
      {{{"input", "x"}, {"temperature", "hot"}}, "temperature", ""},
      {{{"input", "x"}, {"max_tokens", 5}}, "max_tokens", ""},
      {{{"input", "x"}, {"messages", json::array()}}, "messages", ""},
      {{{"input", "x"}, {"metadata", "tag"}}, "metadata", ""},
      {{{"input", "x"}, {"metadata", {{"k", 1}}}}, "metadata.k", ""},
      {{{"input", "x"}, {"truncation", "bogus"}}, "truncation", ""},
      {{{"input", "x"}, {"truncation", "auto"}}, "truncation", "unsupported_parameter"},
      {{{"input", "x"}, {"guided_regex", "a+"}}, "guided_regex", "unsupported_parameter"},
      // An output for a call nobody made (OpenAI: 400), and one answering a later call.
      {{{"input", {{{"type", "function_call_output"}, {"call_id", "call_9"}, {"output", "x"}}}}},
       "input[0].call_id",
       ""},
      {{{"input",
         {{{"type", nullptr}, {"role", "user"}, {"content", "hi"}},
          {{"type", "function_call_output"}, {"call_id", "nope"}, {"output", "x"}}}}},
       "input[1].call_id",
       ""},
      {{{"input",
         {{{"type", "function_call_output"}, {"call_id", "c"}, {"output", "x"}},
          {{"type", "function_call"}, {"call_id", "c"}, {"name", "f"}, {"arguments", "{}"}}}}},
       "input[0].call_id",
       ""},
  };
  for (const Case& c : cases) {
    const ApiError e = error_of(c.body);
    EXPECT_EQ(e.status(), 400) << c.body.dump();
    EXPECT_EQ(e.param(), c.param) << c.body.dump() << ": " << e.what();
    EXPECT_EQ(e.code(), c.code) << c.body.dump();
  }
  // The message quotes the Responses name too.
  EXPECT_NE(std::string(error_of({{"input", "x"}, {"max_output_tokens", -1}}).what())
                .find("'max_output_tokens'"),
            std::string::npos);
}

// --- the builder over known events -------------------------------------------------------------

StreamEvent accepted(ToolFormat tools) {
  return test::accepted_event(tools, 12);
}

ResponsesMeta meta() {
  return ResponsesMeta{"resp_test", 1, "m", json::object(), false, nullptr};
}

const std::vector<std::string> kThinkTextCall = {
    "<think>plan", " it</think>", "Let me look.", "\n<tool_call>\n{\"name\": \"weather\", ",
    "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"};

TEST(ResponsesBuilder, WholeResponseHasReasoningMessageAndCallItems) {
  ResponsesBuilder b(meta(), accepted(ToolFormat::Hermes));
  for (const StreamEvent& ev : test::output_events(kThinkTextCall, FinishReason::Stop)) b.add(ev);
  ASSERT_TRUE(b.done());
  const json r = b.response();
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["status"], "completed");
  ASSERT_EQ(r["output"].size(), 3u);
  EXPECT_EQ(r["output"][0]["type"], "reasoning");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "plan it");
  EXPECT_EQ(r["output"][1]["type"], "message");
  EXPECT_EQ(r["output"][1]["content"][0]["text"], "Let me look.");
  EXPECT_EQ(r["output"][2]["type"], "function_call");
  EXPECT_EQ(r["output"][2]["name"], "weather");
  EXPECT_EQ(json::parse(r["output"][2]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_FALSE(r["output"][2]["call_id"].get<std::string>().empty());
  EXPECT_EQ(r["usage"]["input_tokens"], 12);
  EXPECT_EQ(r["usage"]["output_tokens"], 5);
  EXPECT_EQ(r["usage"]["total_tokens"], 17);
}

TEST(ResponsesBuilder, StreamCarriesTheSameItemsInOrder) {
  ResponsesBuilder b(meta(), accepted(ToolFormat::Hermes));
  std::string body = b.start();
  for (const StreamEvent& ev : test::output_events(kThinkTextCall, FinishReason::Stop))
    body += b.stream(ev);
  body += b.end();
  const std::vector<json> evs = test::typed_sse_events(body);
  ASSERT_GE(evs.size(), 3u);
  std::string reasoning, text, arguments;
  std::vector<std::string> added;
  for (size_t i = 0; i < evs.size(); ++i) {
    EXPECT_EQ(evs[i]["sequence_number"], int(i));
    const std::string t = evs[i]["type"];
    if (t == "response.reasoning_text.delta") reasoning += evs[i]["delta"].get<std::string>();
    if (t == "response.output_text.delta") text += evs[i]["delta"].get<std::string>();
    if (t == "response.function_call_arguments.delta")
      arguments += evs[i]["delta"].get<std::string>();
    if (t == "response.output_item.added") {
      added.push_back(evs[i]["item"]["type"]);
      EXPECT_EQ(evs[i]["output_index"], int(added.size()) - 1);
    }
  }
  EXPECT_EQ(evs.front()["type"], "response.created");
  EXPECT_EQ(evs[1]["type"], "response.in_progress");
  EXPECT_EQ(evs.back()["type"], "response.completed");
  EXPECT_EQ(reasoning, "plan it");
  EXPECT_EQ(text, "Let me look.");  // the newline before the call held, then dropped
  EXPECT_EQ(json::parse(arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(added, (std::vector<std::string>{"reasoning", "message", "function_call"}));
  ASSERT_EQ(evs.back()["type"], "response.completed");
  const json& r = evs.back()["response"];
  ASSERT_EQ(r["output"].size(), 3u);
  EXPECT_EQ(r["output"][1]["content"][0]["text"], text);
  EXPECT_EQ(r["output"][2]["arguments"], arguments);
  EXPECT_EQ(r["usage"]["output_tokens"], 5);
}

TEST(ResponsesBuilder, TokenLimitMakesItIncompleteAndErrorsEndAsFailed) {
  ResponsesBuilder whole(meta(), accepted(ToolFormat::None));
  for (const StreamEvent& ev : test::output_events({"a", "b"}, FinishReason::Length)) whole.add(ev);
  EXPECT_EQ(whole.response()["status"], "incomplete");
  EXPECT_EQ(whole.response()["incomplete_details"]["reason"], "max_output_tokens");

  ResponsesBuilder s(meta(), accepted(ToolFormat::None));
  std::string body = s.start();
  for (const StreamEvent& ev : test::output_events({"a", "b"}, FinishReason::Length))
    body += s.stream(ev);
  body += s.end();
  EXPECT_EQ(test::typed_sse_events(body).back()["type"], "response.incomplete");

  ResponsesBuilder f(meta(), accepted(ToolFormat::None));
  body = f.start() + f.stream(test::output_events({"a", "b"}, FinishReason::Stop)[0]);
  body += f.stream_error(ApiError(503, "engine failed", "server_error"));
  body += f.aborted_end();
  const std::vector<json> evs = test::typed_sse_events(body);
  ASSERT_GE(evs.size(), 2u);
  EXPECT_EQ(evs[evs.size() - 2]["type"], "error");
  EXPECT_EQ(evs[evs.size() - 2]["message"], "engine failed");
  EXPECT_EQ(evs.back()["type"], "response.failed");
  EXPECT_EQ(evs.back()["response"]["error"]["message"], "engine failed");
  EXPECT_EQ(evs.back()["response"]["output"][0]["content"][0]["text"], "a");
}

// The whole answer and the final response of a stream of the same events.
struct BothWays {
  json whole, streamed;
  std::vector<json> events;
};

BothWays both_ways(const std::vector<StreamEvent>& evs, ToolFormat tools, bool logprobs = false) {
  ResponsesMeta m = meta();
  m.want_logprobs = logprobs;
  ResponsesBuilder whole(m, accepted(tools)), stream(m, accepted(tools));
  const std::string body = test::whole_and_streamed(whole, stream, evs);
  BothWays b{whole.response(), json(), test::typed_sse_events(body)};
  if (!b.events.empty()) b.streamed = b.events.back()["response"];
  return b;
}

// Item types and texts (ids differ between the two).
std::vector<std::string> summary(const json& response) {
  std::vector<std::string> out;
  for (const json& item : response["output"]) {
    std::string s = item["type"].get<std::string>() + ":";
    if (item["type"] == "function_call")
      s += item["name"].get<std::string>() + item["arguments"].get<std::string>();
    if (item["type"] != "function_call") s += item["content"][0]["text"].get<std::string>();
    if (item.contains("status")) s += ":" + item["status"].get<std::string>();
    out.push_back(s);
  }
  return out;
}

TEST(ResponsesBuilder, WholeAndStreamAgreeOnEdgeCases) {
  using V = std::vector<std::string>;
  // Cut off inside the reasoning block: the reasoning and an empty, incomplete message.
  BothWays b = both_ways(test::output_events({"<think>still", " going"}, FinishReason::Length),
                         ToolFormat::Hermes);
  EXPECT_EQ(summary(b.whole), (V{"reasoning:still going", "message::incomplete"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
  EXPECT_EQ(b.whole["status"], "incomplete");
  // Blanks before a call make no message.
  b = both_ways(test::output_events(
                    {"\n\n", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"},
                    FinishReason::Stop),
                ToolFormat::Hermes);
  EXPECT_EQ(summary(b.whole), (V{"function_call:f{}:completed"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
  // Without tools or reasoning the text is kept as written, blanks and all.
  b = both_ways(test::output_events({"  a ", " b  "}, FinishReason::Stop), ToolFormat::None);
  EXPECT_EQ(summary(b.whole), (V{"message:  a  b  :completed"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
  // Nothing at all: one empty message.
  b = both_ways(test::output_events({""}, FinishReason::Stop), ToolFormat::None);
  EXPECT_EQ(summary(b.whole), (V{"message::completed"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
}

TEST(ResponsesBuilder, MessageLogprobsAreThoseOfItsText) {
  std::vector<StreamEvent> evs = test::output_events(kThinkTextCall, FinishReason::Stop);
  for (size_t i = 0; i < evs.size(); ++i) {  // one token per piece, named by its piece
    LogprobToken t;
    t.id = int32_t(i);
    t.text = kThinkTextCall[i];
    t.logprob = -float(i + 1);
    evs[i].logprobs = {t};
  }
  const BothWays b = both_ways(evs, ToolFormat::Hermes, /*logprobs=*/true);
  for (const json* r : {&b.whole, &b.streamed}) {
    const json& lp = (*r)["output"][1]["content"][0]["logprobs"];
    ASSERT_EQ(lp.size(), 1u) << lp.dump();
    EXPECT_EQ(lp[0]["token"], "Let me look.");
    EXPECT_EQ(lp[0]["logprob"], -3.0);
  }
  size_t deltas_with_logprobs = 0;
  for (const json& ev : b.events)
    if (ev["type"] == "response.output_text.delta") deltas_with_logprobs += ev["logprobs"].size();
  EXPECT_EQ(deltas_with_logprobs, 1u);
}

// Each piece one token named by its text, with logprob -(its place + 1).
std::vector<StreamEvent> with_logprobs(std::vector<StreamEvent> evs) {
  for (size_t i = 0; i < evs.size(); ++i) {
    LogprobToken t;
    t.id = int32_t(i);
    t.text = evs[i].output.text_delta;
    t.logprob = -float(i + 1);
    evs[i].logprobs = {t};
  }
  return evs;
}

TEST(ResponsesBuilder, ACallTheLimitCutIsOneIncompleteCallAndNoText) {
  using V = std::vector<std::string>;
  // Review of 2026-12-07: the markup came back as a message and the last fragment as a call with
  // no id and no name.
  BothWays b =
      both_ways(test::output_events({"<tool_call>\n{\"name\": \"Write\", ",
                                     "\"arguments\": {\"content\": ", "\"line1\\n", "line2"},
                                    FinishReason::Length),
                ToolFormat::Hermes);
  EXPECT_EQ(summary(b.whole), (V{"function_call:Write{\"content\": \"line1\\nline2:incomplete"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
  EXPECT_EQ(b.whole["status"], "incomplete");
  EXPECT_FALSE(b.whole["output"][0]["call_id"].get<std::string>().empty());

  // A complete call, then text the limit cut: the call is complete, the message is not.
  b = both_ways(test::output_events({"Intro ", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}",
                                     "\n</tool_call>", "\nmore text"},
                                    FinishReason::Length),
                ToolFormat::Hermes);
  EXPECT_EQ(summary(b.whole), (V{"message:Intro:completed", "function_call:f{}:completed",
                                 "message:more text:incomplete"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));

  // The last event ends a call and brings text after it: the call's last fragment stays its own.
  b = both_ways(test::output_events({"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": ",
                                     "\"abc", "\"}}\n</tool_call>\nDone"},
                                    FinishReason::Stop),
                ToolFormat::Hermes);
  EXPECT_EQ(summary(b.whole),
            (V{"function_call:f{\"x\": \"abc\"}:completed", "message:Done:completed"}));
  EXPECT_EQ(summary(b.streamed), summary(b.whole));
}

TEST(ResponsesBuilder, TheClosingThinkTokenIsNotTheMessages) {
  const BothWays b =
      both_ways(with_logprobs(test::output_events(
                    {"<think>", "x", "</think>", "\n\n", "Ans", " wer"}, FinishReason::Stop)),
                ToolFormat::None, /*logprobs=*/true);
  for (const json* r : {&b.whole, &b.streamed}) {
    ASSERT_EQ((*r)["output"].size(), 2u) << r->dump();
    std::string tokens;
    for (const json& t : (*r)["output"][1]["content"][0]["logprobs"])
      tokens += t["token"].get<std::string>() + "|";
    EXPECT_EQ(tokens, "\n\n|Ans| wer|");
  }
}

// --- end to end on the fake model ---------------------------------------------------------------

using test_server::TestServer;

TEST(ServerResponses, WholeAndStreamedEqualTheConversationRunAlone) {
  TestServer ts;
  const test_server::Alone ref = test_server::chat_alone(
      {{"system", "be short"}, {"user", "hello there"}}, test_server::greedy(20));
  const json body = {{"model", test_server::kModel},
                     {"instructions", "be short"},
                     {"input", "hello there"},
                     {"max_output_tokens", 20},
                     {"temperature", 0}};
  auto r = ts.post("/v1/responses", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_TRUE(j["id"].get<std::string>().starts_with("resp_"));
  EXPECT_EQ(j["model"], test_server::kModel);
  EXPECT_EQ(j["instructions"], "be short");
  EXPECT_EQ(j["status"], ref.finish_reason == "length" ? "incomplete" : "completed");
  ASSERT_EQ(j["output"].size(), 1u);
  EXPECT_EQ(j["output"][0]["content"][0]["text"], ref.text);
  EXPECT_EQ(j["usage"]["input_tokens"], ref.prompt_tokens);
  EXPECT_EQ(j["usage"]["output_tokens"], ref.completion_tokens);

  json sbody = body;
  sbody["stream"] = true;
  r = ts.post("/v1/responses", sbody);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::string text;
  const std::vector<json> evs = test::typed_sse_events(r->body);
  for (const json& ev : evs)
    if (ev["type"] == "response.output_text.delta") text += ev["delta"].get<std::string>();
  EXPECT_EQ(text, ref.text);
  ASSERT_FALSE(evs.empty());
  ASSERT_EQ(evs.back()["type"],
            j["status"] == "completed" ? "response.completed" : "response.incomplete");
  EXPECT_EQ(evs.back()["response"]["output"][0]["content"][0]["text"], ref.text);
  EXPECT_EQ(evs.back()["response"]["usage"]["output_tokens"], ref.completion_tokens);
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerResponses, BadRequestsAndMethods) {
  TestServer ts;
  auto r = ts.post("/v1/responses", json{{"input", "x"}, {"previous_response_id", "resp_1"}});
  ASSERT_TRUE(r);
  test_server::expect_openai_error(r, 400, "previous_response_id");
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "previous_response_id");
  r = ts.post("/v1/responses", json{{"input", "x"}, {"model", "other"}});
  test_server::expect_openai_error(r, 404, "another model");
  auto g = ts.client()->Get("/v1/responses");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 405);
  EXPECT_EQ(g->get_header_value("Allow"), "POST");
  EXPECT_TRUE(ts.wait_idle());
}

}  // namespace
}  // namespace nc
