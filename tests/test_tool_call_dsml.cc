// DeepSeek-V3.2's and V4's DSML tool calls (server/tool_call_dsml.h): told from the template,
// typed by each parameter's own string attribute, content around the blocks kept, calls cut by
// the end kept with what was read, and the same answer streamed (the calls whole at the end).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "server/tool_call_dsml.h"
#include "server/tool_calls.h"

namespace nc::server::test_tool_call_dsml {
namespace {

using json = nlohmann::json;

// What V3.2's template writes for an earlier call (an excerpt).
const std::string kTemplate =
    "{{- '<' + dsml_token + 'invoke name=\"' + func['name'] + '\">\\n' -}}"
    "{%- set dsml_token = '｜DSML｜' -%}";

OutputFormat dsml_format(bool forced = false) {
  OutputFormat f = detect_output_format(kTemplate, "", true);
  f.forced_calls = forced;
  return f;
}

// A V3.2 block with two calls, then a V4 block with one, text around them.
const std::string kAnswer =
    "<think>Look it up.</think>Checking.\n\n<｜DSML｜function_calls>\n"
    "<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">San Francisco</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"where\" string=\"false\">{\"lat\": 37.7, \"tags\": [1, null]}"
    "</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"zip\" string=\"true\">94103</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"none\" string=\"true\">null</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"loose\" string=\"false\">not json</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"note\">\n"
    "<｜DSML｜parameter name=\"text\" string=\"true\">line 1\nline 2</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls> Between. <｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"ping\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

TEST(ToolCallDsml, TheTemplateTellsTheFormat) {
  EXPECT_EQ(dsml_format().tools, ToolFormat::Dsml);
  EXPECT_TRUE(calls_sent_whole(ToolFormat::Dsml));
  EXPECT_EQ(detect_output_format("<tool_call>", "", true).tools, ToolFormat::Hermes);
}

TEST(ToolCallDsml, ParametersAreTypedByTheirStringAttribute) {
  const ParsedOutput p = parse_output(kAnswer, dsml_format());
  EXPECT_EQ(p.reasoning, "Look it up.");
  EXPECT_EQ(p.content, "Checking.\n\n Between.");
  ASSERT_EQ(p.calls.size(), 3u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  // In the model's key order; string="true" is text even when it reads as JSON.
  EXPECT_EQ(p.calls[0].arguments,
            R"({"city":"San Francisco","days":3,"where":{"lat":37.7,"tags":[1,null]},)"
            R"("zip":"94103","none":"null","loose":"not json"})");
  EXPECT_EQ(p.calls[1].name, "note");
  EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"text": "line 1\nline 2"})"));
  EXPECT_EQ(p.calls[2].name, "ping");
  EXPECT_EQ(p.calls[2].arguments, "{}");
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
  EXPECT_NE(p.calls[1].id, p.calls[2].id);
}

TEST(ToolCallDsml, StreamedAnswerEqualsTheWholeParse) {
  const OutputFormat f = dsml_format();
  const ParsedOutput whole = parse_output(kAnswer, f);
  for (size_t step : {size_t(1), size_t(3), size_t(40), kAnswer.size()}) {
    SCOPED_TRACE(step);
    OutputStream s(f);
    std::string reasoning, content;
    std::map<int, ToolCall> calls;
    auto take = [&](const OutputStream::Delta& d) {
      reasoning += d.reasoning;
      content += d.content;
      for (const ToolCallDelta& c : d.calls) {
        if (c.first) calls[c.index].name = c.name;
        calls[c.index].arguments += c.arguments;
      }
    };
    for (size_t i = 0; i < kAnswer.size(); i += step) take(s.add(kAnswer.substr(i, step)));
    take(s.finish());
    EXPECT_EQ(reasoning, whole.reasoning);
    EXPECT_EQ(content, whole.content);
    ASSERT_EQ(calls.size(), whole.calls.size());
    for (size_t k = 0; k < whole.calls.size(); ++k) {
      EXPECT_EQ(calls[int(k)].name, whole.calls[k].name);
      EXPECT_EQ(calls[int(k)].arguments, whole.calls[k].arguments);
    }
  }
}

TEST(ToolCallDsml, CutCallsBlocksWithoutCallsAndForcedCalls) {
  // max_tokens inside a value: the value so far; inside a tag: the parameters before it.
  ParsedOutput p = parse_output(
      "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"note\">\n"
      "<｜DSML｜parameter name=\"text\" string=\"true\">half a sent",
      dsml_format());
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(json::parse(p.calls[0].arguments), json::parse(R"({"text": "half a sent"})"));
  EXPECT_EQ(p.content, "");
  p = parse_output(
      "<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter name=\"a\" "
      "string=\"false\">1</｜DSML｜parameter><｜DSML｜parameter name=\"b",
      dsml_format());
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, R"({"a":1})");
  // No invocation names its function: the block stays in the content.
  for (const std::string no :
       {"A "
        "<｜DSML｜function_calls>\n<｜DSML｜invoke>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
        "A <｜DSML｜function_calls>\n<｜DSML｜invoke name=\"\">x</｜DSML｜invoke>"
        "</｜DSML｜function_calls> B",
        "<｜DSML｜invoke name=\"f\"></｜DSML｜invoke> outside a block"}) {
    p = parse_output(no, dsml_format());
    EXPECT_TRUE(p.calls.empty()) << no;
    EXPECT_EQ(p.content, no);
  }
  // Many blocks, some of each name: every call read, in order.
  std::string many;
  for (int i = 0; i < 3000; ++i)
    many += i % 100 == 0 ? "<｜DSML｜tool_calls><｜DSML｜invoke name=\"g\"></｜DSML｜invoke>"
                           "</｜DSML｜tool_calls>"
                         : "<｜DSML｜function_calls><｜DSML｜invoke name=\"f\"></｜DSML｜invoke>"
                           "</｜DSML｜function_calls>";
  p = parse_output(many, dsml_format());
  ASSERT_EQ(p.calls.size(), 3000u);
  EXPECT_EQ(p.calls[100].name, "g");
  EXPECT_EQ(p.calls[2999].name, "f");
  EXPECT_EQ(p.content, "");
  // A forced call is the grammar's Hermes tag.
  p = parse_output(
      "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"hi\"}}\n</tool_call>",
      dsml_format(/*forced=*/true));
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "note");
}

}  // namespace
}  // namespace nc::server::test_tool_call_dsml
