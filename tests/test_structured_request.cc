// The structured-output fields of a request (server/structured_request.h): which grammar each
// field asks for, the 400s that name the field, and the grammar that enforces tool_choice, run
// through a real matcher on the fake byte codec.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/grammar.h"
#include "fake_model.h"
#include "server/api_error.h"
#include "server/structured_request.h"

namespace nc::server {
namespace {

using json = nlohmann::json;
using Kind = StructuredOutput::Kind;

StructuredRequest parse(const std::string& body) {
  EXPECT_EQ(needs_structured(json::parse(body)), body != "{}") << body;
  return parse_structured(nlohmann::ordered_json::parse(body));
}

std::string param_of_error(const std::string& body) {
  try {
    parse(body);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.param();
  }
  return "(accepted)";
}

TEST(StructuredRequest, FieldsAndTheirKinds) {
  EXPECT_FALSE(parse("{}").output.active());
  EXPECT_FALSE(parse(R"({"response_format": {"type": "text"}})").output.active());
  StructuredRequest r = parse(R"({"response_format": {"type": "json_object"}})");
  EXPECT_EQ(r.output.kind, Kind::Json);
  EXPECT_EQ(r.param, "response_format");
  r = parse(R"({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
      "schema": {"type": "integer"}, "strict": true}}})");
  EXPECT_EQ(r.output.kind, Kind::JsonSchema);
  EXPECT_EQ(json::parse(r.output.spec), json({{"type", "integer"}}));
  // Key order kept: properties are generated in the request's order.
  r = parse(R"({"guided_json": {"properties": {"z": {}, "a": {}}}})");
  EXPECT_EQ(r.output.spec, R"({"properties":{"z":{},"a":{}}})");
  r = parse(R"({"guided_json": "{\"type\": \"string\"}"})");
  EXPECT_EQ(r.output.kind, Kind::JsonSchema);
  EXPECT_EQ(r.param, "guided_json");
  r = parse(R"({"guided_regex": "[0-9]+"})");
  EXPECT_EQ(r.output.kind, Kind::Regex);
  EXPECT_EQ(r.output.spec, "[0-9]+");
  r = parse(R"({"structured_outputs": {"grammar": "root ::= \"a\""}})");
  EXPECT_EQ(r.output.kind, Kind::Grammar);
  EXPECT_EQ(r.param, "structured_outputs");
  // A choice is a regex of the escaped strings.
  r = parse(R"j({"guided_choice": ["a.b", "(c)"]})j");
  EXPECT_EQ(r.output.kind, Kind::Regex);
  EXPECT_EQ(r.output.spec, R"j((a\.b)|(\(c\)))j");
}

TEST(StructuredRequest, BadFieldsNameThemselves) {
  EXPECT_EQ(param_of_error(R"({"response_format": {"type": "yaml"}})"), "response_format");
  EXPECT_EQ(param_of_error(R"({"response_format": "json"})"), "response_format");
  EXPECT_EQ(param_of_error(R"({"response_format": {"type": "json_schema"}})"), "response_format");
  EXPECT_EQ(param_of_error(R"({"guided_json": "{nope"})"), "guided_json");
  EXPECT_EQ(param_of_error(R"({"guided_regex": ""})"), "guided_regex");
  EXPECT_EQ(param_of_error(R"({"guided_choice": []})"), "guided_choice");
  EXPECT_EQ(param_of_error(R"({"structured_outputs": {}})"), "structured_outputs");
  EXPECT_EQ(param_of_error(R"({"structured_outputs": {"regex": "a", "choice": ["b"]}})"),
            "structured_outputs");
  EXPECT_EQ(param_of_error(R"({"guided_regex": "a", "guided_grammar": "root ::= \"a\""})"),
            "guided_grammar");
}

ToolRequest tools_with(ToolChoiceKind choice, const std::string& name = "") {
  ToolRequest t;
  t.tools = nlohmann::ordered_json::parse(R"([
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"n": {"enum": [1, 2]}}, "required": ["n"], "additionalProperties": false}}},
    {"type": "function", "function": {"name": "g"}}])");
  t.choice = choice;
  t.choice_name = name;
  return t;
}

// Walks the grammar with the text's bytes: whether it accepts all of them and then EOS.
bool grammar_accepts(const StructuredOutput& s, const std::string& text) {
  fake::FakeCodec codec;
  GrammarCache cache(codec, 300, 30);
  std::unique_ptr<TokenGrammar> m = cache.matcher(s);
  for (unsigned char c : text)
    if (!m->accept(int32_t(c))) return false;
  return m->accept(fake::FakeCodec::kEos) && m->terminated();
}

TEST(StructuredRequest, ToolChoiceGrammarForcesOneCallInTheFormat) {
  EXPECT_FALSE(tool_choice_grammar(tools_with(ToolChoiceKind::Auto), ToolFormat::Hermes).active());
  const StructuredOutput req =
      tool_choice_grammar(tools_with(ToolChoiceKind::Required), ToolFormat::Hermes);
  ASSERT_EQ(req.kind, Kind::StructuralTag);
  EXPECT_TRUE(grammar_accepts(
      req, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 2}}\n</tool_call>"));
  EXPECT_TRUE(
      grammar_accepts(req, "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(
      req, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 3}}\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(req, "Sure!"));
  const StructuredOutput named =
      tool_choice_grammar(tools_with(ToolChoiceKind::Named, "f"), ToolFormat::Llama3Json);
  EXPECT_TRUE(grammar_accepts(named, "{\"name\": \"f\", \"parameters\": {\"n\": 1}}"));
  EXPECT_FALSE(grammar_accepts(named, "{\"name\": \"g\", \"parameters\": {}}"));
  const StructuredOutput mistral =
      tool_choice_grammar(tools_with(ToolChoiceKind::Named, "g"), ToolFormat::Mistral);
  EXPECT_TRUE(grammar_accepts(mistral, "[{\"name\": \"g\", \"arguments\": {}}]"));
}

}  // namespace
}  // namespace nc::server
