// The structured-output fields of a request (server/structured_request.h): which grammar each
// field asks for, the 400s that name the field, and the grammar that enforces tool_choice, run
// through a real matcher on the fake byte codec.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/grammar.h"
#include "fake_model.h"
#include "nanocascade/engine.h"
#include "server/api_error.h"
#include "server/structured_request.h"
#include "server/tool_calls.h"

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
  // Review of 2026-12-07: a format without its type was read as text (unconstrained).
  EXPECT_EQ(param_of_error(R"({"response_format": {"json_schema": {"schema": {}}}})"),
            "response_format");
  EXPECT_EQ(param_of_error(R"({"response_format": {"type": 3}})"), "response_format");
  // A schema string nested past the body's bound (its dump recursed once a level: a stack
  // overflow took the server down, review of 2026-12-07) is a 400 like the body would be.
  const std::string deep = "{\"a\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  EXPECT_EQ(param_of_error(json{{"guided_json", deep}}.dump()), "guided_json");
  EXPECT_EQ(param_of_error(json{
                {"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", deep}}}}}}
                               .dump()),
            "response_format");
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

TEST(StructuredRequest, ToolChoiceGrammarForcesCallsInTheFormat) {
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

// Two calls in each format, as its parser splits them.
std::string two_calls(ToolFormat f) {
  switch (f) {
    case ToolFormat::Llama3Json:
      return R"({"name": "f", "parameters": {"n": 1}}; {"name": "g", "parameters": {}})";
    case ToolFormat::Mistral:
      return R"([{"name": "f", "arguments": {"n": 1}}, {"name": "g", "arguments": {}}])";
    default:
      return "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 1}}\n</tool_call>\n"
             "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
  }
}

std::string one_call(ToolFormat f) {
  switch (f) {
    case ToolFormat::Llama3Json:
      return R"({"name": "g", "parameters": {}})";
    case ToolFormat::Mistral:
      return R"([{"name": "g", "arguments": {}}])";
    default:
      return "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
  }
}

TEST(StructuredRequest, ParallelToolCallsAllowSeveralCallsAndFalseExactlyOne) {
  for (ToolFormat f : {ToolFormat::Hermes, ToolFormat::Llama3Json, ToolFormat::Mistral}) {
    ToolRequest parallel = tools_with(ToolChoiceKind::Required);
    ToolRequest single = parallel;
    single.parallel_calls = false;
    const StructuredOutput several = tool_choice_grammar(parallel, f);
    const StructuredOutput one = tool_choice_grammar(single, f);
    EXPECT_TRUE(grammar_accepts(several, two_calls(f))) << int(f);
    EXPECT_TRUE(grammar_accepts(several, one_call(f))) << int(f);
    EXPECT_FALSE(grammar_accepts(several, "")) << int(f);  // at least one call
    EXPECT_FALSE(grammar_accepts(one, two_calls(f))) << int(f);
    EXPECT_TRUE(grammar_accepts(one, one_call(f))) << int(f);
    // The text the grammar allows is what the format's parser reads back as calls.
    const OutputFormat of{f, false, /*forced_calls=*/true};
    const ParsedOutput two = parse_output(two_calls(f), of);
    ASSERT_EQ(two.calls.size(), 2u) << int(f);
    EXPECT_EQ(two.calls[0].name, "f");
    EXPECT_EQ(json::parse(two.calls[0].arguments), json::parse(R"({"n": 1})"));
    EXPECT_EQ(two.calls[1].name, "g");
    EXPECT_TRUE(two.content.empty()) << two.content;
    // A named function: several calls of it only.
    ToolRequest named = tools_with(ToolChoiceKind::Named, "g");
    const StructuredOutput g = tool_choice_grammar(named, f);
    EXPECT_FALSE(grammar_accepts(g, two_calls(f))) << int(f);
    EXPECT_TRUE(grammar_accepts(g, one_call(f))) << int(f);
  }
}

// The fake model (pseudo-random logits) writing under the grammar, sampled: whatever it draws is
// one or more valid calls with parallel_tool_calls, exactly one without.
std::vector<size_t> generated_call_counts(ToolFormat f, bool parallel) {
  EngineConfig cfg;
  cfg.kv_cache_memory = std::to_string(int64_t(4096) * 16 * 8);
  Engine engine(cfg, std::make_unique<fake::FakeModel>(300, 4096, true),
                std::make_unique<fake::FakeCodec>());
  // Arguments that stay short whatever the model draws (g's free object would not).
  ToolRequest tools = tools_with(ToolChoiceKind::Required);
  tools.tools[1]["function"]["parameters"] = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"],
          "additionalProperties": false})");
  tools.parallel_calls = parallel;
  SamplingParams p;
  p.temperature = 1;
  p.max_tokens = 2000;
  p.structured = tool_choice_grammar(tools, f);
  std::vector<std::string> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back("call " + std::to_string(i));
  std::vector<size_t> counts;
  for (const CompletionOutput& o : engine.generate(prompts, p)) {
    EXPECT_EQ(o.finish_reason, FinishReason::Stop) << o.text;
    const ParsedOutput parsed = parse_output(o.text, OutputFormat{f, false, true});
    for (const ToolCall& c : parsed.calls) {
      EXPECT_TRUE(c.name == "f" || c.name == "g") << o.text;
      EXPECT_TRUE(json::parse(c.arguments).is_object()) << o.text;
    }
    EXPECT_TRUE(parsed.content.empty()) << o.text;
    counts.push_back(parsed.calls.size());
  }
  return counts;
}

TEST(StructuredRequest, GeneratedForcedCallsAreSeveralOnlyWhenParallel) {
  for (ToolFormat f : {ToolFormat::Hermes, ToolFormat::Llama3Json, ToolFormat::Mistral}) {
    const std::vector<size_t> several = generated_call_counts(f, true);
    EXPECT_GE(*std::min_element(several.begin(), several.end()), 1u) << int(f);
    EXPECT_GE(*std::max_element(several.begin(), several.end()), 2u) << int(f);
    for (size_t n : generated_call_counts(f, false)) EXPECT_EQ(n, 1u) << int(f);
  }
}

TEST(StructuredRequest, ParallelToolCallsIsABoolean) {
  auto body = [](const std::string& extra) {
    return nlohmann::ordered_json::parse(
        R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
            "function": {"name": "f"}}], "tool_choice": "required")" +
        extra + "}");
  };
  EXPECT_TRUE(parse_tool_request(body("")).parallel_calls);  // OpenAI's default
  EXPECT_FALSE(parse_tool_request(body(R"(, "parallel_tool_calls": false)")).parallel_calls);
  try {
    parse_tool_request(body(R"(, "parallel_tool_calls": "no")"));
    ADD_FAILURE() << "accepted a string";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "parallel_tool_calls");
  }
  EXPECT_TRUE(needs_tool_request(json::parse(R"({"parallel_tool_calls": false})")));
}

}  // namespace
}  // namespace nc::server
