// Tool-call ids (server/tool_call_id.h): their shape per format (Mistral's templates raise unless
// an id is 9 alphanumerics), distinct ids within an output, the same shape streamed and not, and
// a client's ids fitted to a Mistral template the same way each time.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/tool_call_id.h"
#include "server/tool_calls.h"
#include "server/tool_request.h"

namespace nc::server {
namespace {

bool is_mistral_id(const std::string& id) {
  return id.size() == 9 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
         });
}

bool is_openai_id(const std::string& id) {
  return id.size() == 5 + 24 && id.starts_with("call_") &&
         id.find_first_not_of("0123456789abcdef", 5) == std::string::npos;
}

TEST(ToolCallId, ShapePerFormatAndDistinct) {
  std::set<std::string> mistral, hermes;
  std::set<char> chars;
  for (int i = 0; i < 5000; ++i) {
    const std::string m = new_tool_call_id(ToolFormat::Mistral);
    ASSERT_TRUE(is_mistral_id(m)) << m;
    chars.insert(m.begin(), m.end());
    mistral.insert(m);
    const std::string h = new_tool_call_id(ToolFormat::Hermes);
    ASSERT_TRUE(is_openai_id(h)) << h;
    hermes.insert(h);
    ASSERT_TRUE(is_openai_id(new_tool_call_id(ToolFormat::Llama3Json)));
  }
  EXPECT_EQ(mistral.size(), 5000u);
  EXPECT_EQ(hermes.size(), 5000u);
  EXPECT_EQ(chars.size(), 62u);  // the whole alphabet is drawn from (upper, lower, digits)
  EXPECT_TRUE(tool_call_id_fits(ToolFormat::Mistral, "abcXYZ019"));
  EXPECT_FALSE(tool_call_id_fits(ToolFormat::Mistral, "abcXYZ01"));
  EXPECT_FALSE(tool_call_id_fits(ToolFormat::Mistral, "abc_XYZ01"));
  EXPECT_TRUE(tool_call_id_fits(ToolFormat::Hermes, "anything at all"));
  // Kimi's: functions.NAME:K, K after the history's calls and the output's earlier ones.
  EXPECT_EQ(new_tool_call_id(CallIds{ToolFormat::Kimi, 0}, "get_weather", {}),
            "functions.get_weather:0");
  EXPECT_EQ(new_tool_call_id(CallIds{ToolFormat::Kimi, 3}, "f", {"a", "b"}), "functions.f:5");
  EXPECT_TRUE(is_openai_id(new_tool_call_id(CallIds{ToolFormat::Hermes, 3}, "f", {})));
}

TEST(ToolCallId, WholeParseGivesTheFormatsIds) {
  const std::string list = R"([TOOL_CALLS][{"name": "a", "arguments": {}, "id": "same12345"}, )"
                           R"({"name": "b", "arguments": {}, "id": "same12345"}])";
  const ParsedOutput m = parse_output(list, OutputFormat{ToolFormat::Mistral});
  ASSERT_EQ(m.calls.size(), 2u);
  for (const ToolCall& c : m.calls) EXPECT_TRUE(is_mistral_id(c.id)) << c.id;
  // The ids the model wrote (here the same twice, as a copied turn would) are not used.
  EXPECT_NE(m.calls[0].id, m.calls[1].id);
  EXPECT_NE(m.calls[0].id, "same12345");
  const ParsedOutput named =
      parse_output("[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{}", OutputFormat{ToolFormat::Mistral});
  ASSERT_EQ(named.calls.size(), 1u);
  EXPECT_TRUE(is_mistral_id(named.calls[0].id));
  const ParsedOutput h = parse_output(R"(<tool_call>{"name": "a", "arguments": {}}</tool_call>)",
                                      OutputFormat{ToolFormat::Hermes});
  ASSERT_EQ(h.calls.size(), 1u);
  EXPECT_TRUE(is_openai_id(h.calls[0].id)) << h.calls[0].id;
  const ParsedOutput l =
      parse_output(R"({"name": "a", "parameters": {}})", OutputFormat{ToolFormat::Llama3Json});
  ASSERT_EQ(l.calls.size(), 1u);
  EXPECT_TRUE(is_openai_id(l.calls[0].id)) << l.calls[0].id;
}

// Every id a stream sends, in order of the calls' indices.
std::vector<std::string> streamed_ids(const OutputFormat& f, const std::string& text) {
  OutputStream s(f);
  std::vector<std::string> ids;
  auto take = [&](const OutputStream::Delta& d) {
    for (const ToolCallDelta& c : d.calls)
      if (c.first) ids.push_back(c.id);
  };
  for (char ch : text) take(s.add(std::string(1, ch)));
  take(s.finish());
  return ids;
}

TEST(ToolCallId, StreamGivesTheFormatsIds) {
  // Two calls streamed as they come, then one the streamer cannot follow (a string "arguments"),
  // sent whole at the end: all three in the format's shape and distinct.
  const std::string mistral =
      R"([TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}, )"
      R"({"name": "c", "arguments": "{}"}])";
  std::vector<std::string> ids = streamed_ids(OutputFormat{ToolFormat::Mistral}, mistral);
  ASSERT_EQ(ids.size(), 3u);
  for (const std::string& id : ids) EXPECT_TRUE(is_mistral_id(id)) << id;
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 3u);
  // A forced list (no control token) and the named form.
  ids = streamed_ids(OutputFormat{ToolFormat::Mistral, false, true},
                     R"([{"name": "a", "arguments": {"k": 2}}])");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_TRUE(is_mistral_id(ids[0]));
  ids = streamed_ids(OutputFormat{ToolFormat::Mistral}, R"([TOOL_CALLS]f[ARGS]{"q": 1})");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_TRUE(is_mistral_id(ids[0]));
  ids = streamed_ids(OutputFormat{ToolFormat::Hermes},
                     R"(<tool_call>{"name": "a", "arguments": {}}</tool_call>)"
                     R"(<tool_call>{"name": "b"}</tool_call>)");
  ASSERT_EQ(ids.size(), 2u);
  for (const std::string& id : ids) EXPECT_TRUE(is_openai_id(id)) << id;
  EXPECT_NE(ids[0], ids[1]);
  ids = streamed_ids(OutputFormat{ToolFormat::Llama3Json}, R"({"name": "a", "parameters": {}})");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_TRUE(is_openai_id(ids[0]));
}

TEST(ToolCallId, ClientIdsFitMistralTemplates) {
  // Ids that fit, and every id for the other formats, come back unchanged.
  EXPECT_EQ(fit_tool_call_id(ToolFormat::Mistral, "abcXYZ019"), "abcXYZ019");
  const std::string openai = "call_0123456789abcdef01234567";
  EXPECT_EQ(fit_tool_call_id(ToolFormat::Hermes, openai), openai);
  EXPECT_EQ(fit_tool_call_id(ToolFormat::Llama3Json, ""), "");
  // Others become 9 alphanumerics, the same each time, different for different ids (ids that
  // differ in one character too).
  const std::string a = fit_tool_call_id(ToolFormat::Mistral, openai);
  EXPECT_TRUE(is_mistral_id(a)) << a;
  EXPECT_EQ(fit_tool_call_id(ToolFormat::Mistral, openai), a);
  std::set<std::string> fitted;
  for (int i = 0; i < 1000; ++i)
    fitted.insert(fit_tool_call_id(ToolFormat::Mistral, "call_" + std::to_string(i)));
  EXPECT_EQ(fitted.size(), 1000u);
  for (const std::string& id : {std::string(), std::string("x"), std::string(40, '-')})
    EXPECT_TRUE(is_mistral_id(fit_tool_call_id(ToolFormat::Mistral, id))) << id;
}

TEST(ToolCallId, TemplateMessagesFitCallsAndResultsAlike) {
  const ToolRequest r = parse_tool_request(nlohmann::ordered_json::parse(R"({
      "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_1", "type": "function",
           "function": {"name": "w", "arguments": "{\"city\": \"Paris\"}"}},
          {"id": "abcXYZ019", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
        {"role": "tool", "tool_call_id": "abcXYZ019", "content": "18 C"}],
      "tools": [{"type": "function", "function": {"name": "w"}}]})"));
  const nlohmann::ordered_json m = template_messages(r, ToolFormat::Mistral);
  const std::string fitted = m[1]["tool_calls"][0]["id"];
  EXPECT_TRUE(is_mistral_id(fitted)) << fitted;
  EXPECT_EQ(m[2]["tool_call_id"], fitted);  // the result still names its call
  EXPECT_EQ(m[1]["tool_calls"][1]["id"], "abcXYZ019");
  EXPECT_EQ(m[3]["tool_call_id"], "abcXYZ019");
  EXPECT_EQ(m[1]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
  EXPECT_EQ(template_messages(r, ToolFormat::Hermes), r.messages);
  EXPECT_EQ(r.messages[2]["tool_call_id"], "call_1");  // the request itself is untouched
}

TEST(ToolCallId, AnAssistantCallNeedsAStringId) {
  // As OpenAI: the tool turn names its call by this id (and Mistral's templates write it).
  for (const char* id : {"", R"("id": 7, )", R"("id": null, )"}) {
    const std::string body = std::string(R"({"messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{)") +
                             id + R"("type": "function", "function": {"name": "w"}}]}]})";
    try {
      parse_tool_request(nlohmann::ordered_json::parse(body));
      ADD_FAILURE() << "accepted " << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), "messages[1].tool_calls[0].id");
    }
  }
}

}  // namespace
}  // namespace nc::server
