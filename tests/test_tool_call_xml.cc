// Qwen3-Coder's XML and GLM's tagged tool calls (server/tool_call_xml.h): the format is told from
// the template, values are typed by the request's tool schema (as vLLM's qwen3_coder and glm45
// parsers type them), the streamed answer sends each call whole at the end with the same
// arguments, and a forced call's JSON body (the grammar's) is read too.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "server/tool_call_xml.h"
#include "server/tool_calls.h"

namespace nc::server::test_tool_call_xml {
namespace {

using json = nlohmann::json;

// What Qwen3-Coder's template writes about its format (an excerpt).
const std::string kTemplate =
    "<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n"
    "</parameter>\\n</function>\\n</tool_call>";

OutputFormat xml_format() {
  const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                     "metric": {"type": "boolean"}, "where": {"type": "object"},
                     "zip": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "note", "parameters": {"type": "object",
      "properties": {"text": {"type": "string"}}}}}])");
  OutputFormat f = detect_output_format(kTemplate, "", true);
  f.param_types = std::make_shared<ParamTypeTable>(ParamTypeTable{param_types_of(tools)});
  return f;
}

const std::string kTwoCalls =
    "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n"
    "</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n"
    "<parameter=where>\n{\"lat\": 37.7}\n</parameter>\n<parameter=zip>\n94103\n</parameter>\n"
    "<parameter=extra>\n7\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
    "<function=note>\n<parameter=text>\nline 1\nline 2\n</parameter>\n</function>\n</tool_call>";

TEST(ToolCallXml, TheTemplateTellsTheFormat) {
  EXPECT_EQ(detect_output_format(kTemplate, "", true).tools, ToolFormat::QwenXml);
  EXPECT_EQ(detect_output_format("... <tool_call></tool_call> XML tags", "", true).tools,
            ToolFormat::Hermes);
}

TEST(ToolCallXml, ValuesAreTypedByTheToolSchema) {
  const ParsedOutput p = parse_output(kTwoCalls, xml_format());
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(p.calls[0].arguments),
            json::parse(R"({"city": "San Francisco", "days": 3, "metric": true,
                            "where": {"lat": 37.7}, "zip": "94103", "extra": "7"})"));
  EXPECT_EQ(p.calls[1].name, "note");
  EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"text": "line 1\nline 2"})"));
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
}

// Streams `text` in chunks of `step` bytes: the content and the calls as a client collects them.
ParsedOutput streamed(const std::string& text, const OutputFormat& f, size_t step) {
  OutputStream s(f);
  ParsedOutput out;
  std::map<int, ToolCall> calls;
  auto take = [&](const OutputStream::Delta& d) {
    out.content += d.content;
    for (const ToolCallDelta& c : d.calls) {
      if (c.first) calls[c.index].name = c.name;
      calls[c.index].arguments += c.arguments;
    }
  };
  for (size_t i = 0; i < text.size(); i += step) take(s.add(text.substr(i, step)));
  take(s.finish());
  for (auto& [index, call] : calls) out.calls.push_back(call);
  return out;
}

// The stream gives the whole parse's content and calls (the calls go out whole at the end).
void expect_streamed_equal(const std::string& text, const OutputFormat& f) {
  const ParsedOutput whole = parse_output(text, f);
  for (size_t step : {size_t(1), size_t(5), size_t(64), text.size()}) {
    SCOPED_TRACE(step);
    const ParsedOutput s = streamed(text, f, step);
    EXPECT_EQ(s.content.substr(0, s.content.find_last_not_of(" \n") + 1), whole.content);
    ASSERT_EQ(s.calls.size(), whole.calls.size());
    for (size_t k = 0; k < s.calls.size(); ++k) {
      EXPECT_EQ(s.calls[k].name, whole.calls[k].name);
      EXPECT_EQ(json::parse(s.calls[k].arguments), json::parse(whole.calls[k].arguments));
    }
  }
}

TEST(ToolCallXml, StreamedCallsEqualTheWholeParse) {
  ASSERT_EQ(parse_output(kTwoCalls, xml_format()).calls.size(), 2u);
  expect_streamed_equal(kTwoCalls, xml_format());
}

TEST(ToolCallXml, AForcedJsonBodyAndACutValueAreCalls) {
  const OutputFormat f = xml_format();
  ParsedOutput p = parse_output(
      "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"hi\"}}\n</tool_call>", f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "hi"})"));
  // max_tokens inside a value: the call with the value so far.
  p = parse_output("<tool_call>\n<function=note>\n<parameter=text>\nhalf a sent", f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "half a sent"})"));
  // No <function=...>: not a call, the text stays.
  p = parse_output("<tool_call>\nnothing here\n</tool_call>", f);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "<tool_call>\nnothing here\n</tool_call>");
}

// Optional parameters (a type list, pydantic's anyOf with null) are typed by their other type;
// `null` is null whatever the type; untrusted values nested past 64 levels or cut inside a UTF-8
// character stay text (no stack overflow in dump(), no 500).
TEST(ToolCallXml, OptionalTypesNullsAndHostileValues) {
  const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([{"type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {
      "a": {"type": ["integer", "null"]}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
      "c": {"type": "integer"}, "d": {"type": "array"}, "e": {"type": "string"}}}}}])");
  OutputFormat f = detect_output_format(kTemplate, "", true);
  f.param_types = std::make_shared<ParamTypeTable>(ParamTypeTable{param_types_of(tools)});
  auto args_of = [&](const std::string& params) {
    const ParsedOutput p = parse_output("<tool_call>\n<function=f>\n" + params, f);
    EXPECT_EQ(p.calls.size(), 1u) << params;
    return p.calls.empty() ? json() : json::parse(p.calls[0].arguments);
  };
  EXPECT_EQ(args_of("<parameter=a>\n5\n</parameter>\n<parameter=b>\n6\n</parameter>\n"
                    "<parameter=c>\nnull\n</parameter>"),
            json::parse(R"({"a": 5, "b": 6, "c": null})"));
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(args_of("<parameter=d>\n" + deep + "\n</parameter>")["d"], deep);
  const json cut = args_of("<parameter=e>\nsnow \xE2\x9D");  // U+2744 cut after 2 bytes
  EXPECT_EQ(cut["e"].get<std::string>().substr(0, 5), "snow ");
}

// --- GLM-4.5/4.6/4.7 --------------------------------------------------------------------------

// What GLM-4.6's template writes about its format (an excerpt), and an assistant turn's calls.
const std::string kGlmTemplate =
    "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}"
    "</arg_value>\n</tool_call>{%- endif -%}";

OutputFormat glm_format() {
  OutputFormat f = xml_format();  // the same tools
  f.tools = detect_output_format(kGlmTemplate, "", true).tools;
  return f;
}

// 4.6's layout (newlines between tags) and 4.7's (none), in one answer.
const std::string kGlmCalls =
    "<think>Need the weather.</think>\nLet me check.\n<tool_call>get_weather\n"
    "<arg_key>city</arg_key>\n<arg_value>San Francisco</arg_value>\n<arg_key>days</arg_key>\n"
    "<arg_value>3</arg_value>\n<arg_key>metric</arg_key>\n<arg_value>true</arg_value>\n"
    "<arg_key>where</arg_key>\n<arg_value>{\"lat\": 37.7}</arg_value>\n<arg_key>zip</arg_key>\n"
    "<arg_value>94103</arg_value>\n<arg_key>extra</arg_key>\n<arg_value>[7, null]</arg_value>\n"
    "<arg_key>more</arg_key>\n<arg_value>not json</arg_value>\n</tool_call>"
    "<tool_call>note<arg_key>text</arg_key><arg_value>\nline 1\nline 2</arg_value></tool_call>";

TEST(ToolCallGlm, TheTemplateTellsTheFormat) {
  EXPECT_EQ(glm_format().tools, ToolFormat::GlmXml);
  EXPECT_TRUE(is_tagged_format(ToolFormat::GlmXml));
}

TEST(ToolCallGlm, ValuesAreTypedByTheSchemaAndUnnamedOnesReadAsJson) {
  const ParsedOutput p = parse_output(kGlmCalls, glm_format());
  EXPECT_EQ(p.reasoning, "Need the weather.");
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  // The model's key order is kept; a string parameter stays text even when it looks like JSON.
  EXPECT_EQ(p.calls[0].arguments,
            R"({"city":"San Francisco","days":3,"metric":true,"where":{"lat":37.7},)"
            R"("zip":"94103","extra":[7,null],"more":"not json"})");
  EXPECT_EQ(p.calls[1].name, "note");
  // Values are exactly what is between the tags: no layout to strip.
  EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"text": "\nline 1\nline 2"})"));
  expect_streamed_equal(kGlmCalls, glm_format());
}

// As vLLM's glm45 parser: a string parameter is its text (`null` too); one whose schema gives
// no type ($ref, enum) is read as JSON; blanks or the two characters \n may stand between a key
// and its value, other text there drops that pair only.
TEST(ToolCallGlm, StringsStayTextUntypedParametersAreJsonAndGapsAreLayout) {
  const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([{"type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {
      "s": {"type": "string"}, "loc": {"$ref": "#/$defs/Loc"},
      "opt": {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]}, "n": {"type": "integer"}}}}}])");
  OutputFormat f = glm_format();
  f.param_types = std::make_shared<ParamTypeTable>(ParamTypeTable{param_types_of(tools)});
  const ParsedOutput p = parse_output(
      "<tool_call>f<arg_key>s</arg_key><arg_value>null</arg_value>"
      "<arg_key>loc</arg_key>\\n<arg_value>{\"lat\": 1}</arg_value>"
      "<arg_key>opt</arg_key> \\n\n<arg_value>[1,2]</arg_value>"
      "<arg_key>lost</arg_key>junk<arg_value>1</arg_value>"
      "<arg_key>n</arg_key><arg_value>7</arg_value></tool_call>",
      f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, R"({"s":"null","loc":{"lat":1},"opt":[1,2],"n":7})");
}

TEST(ToolCallGlm, ForcedJsonBodiesCutCallsAndNonCalls) {
  const OutputFormat f = glm_format();
  ParsedOutput p = parse_output(
      "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"hi\"}}\n</tool_call>", f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "hi"})"));
  // max_tokens inside a value: the value so far; inside a key: the arguments before it.
  p = parse_output("<tool_call>note\n<arg_key>text</arg_key>\n<arg_value>half a sent", f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "half a sent"})"));
  p = parse_output("<tool_call>get_weather<arg_key>days</arg_key><arg_value>2</arg_value><arg_ke",
                   f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"days": 2})"));
  // A call with no arguments; no name, or a name with blanks inside, is no call.
  p = parse_output("<tool_call>ping</tool_call>", f);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "ping");
  EXPECT_EQ(p.calls[0].arguments, "{}");
  for (const std::string no :
       {"<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
        "<tool_call>two words</tool_call>"}) {
    p = parse_output(no, f);
    EXPECT_TRUE(p.calls.empty()) << no;
    EXPECT_EQ(p.content, no);
  }
}

}  // namespace
}  // namespace nc::server::test_tool_call_xml
