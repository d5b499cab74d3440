// Structured output fields and enforced tool_choice (server/structured_request.h).
#include "server/structured_request.h"

#include <fmt/format.h>

#include "server/api_error.h"
#include "server/json_fields.h"

namespace nc::server {
namespace {

// Ordered: a schema keeps the request's property order (xgrammar writes properties in it).
using ojson = nlohmann::ordered_json;
using Kind = StructuredOutput::Kind;

// A schema given as an object or as its JSON text (vLLM accepts both).
std::string schema_text(const ojson& v, const std::string& param) {
  if (v.is_object() || v.is_boolean()) return v.dump();
  if (v.is_string()) {
    const ojson parsed = parse_bounded(v.get_ref<const std::string&>());
    if (parsed.is_discarded() || !(parsed.is_object() || parsed.is_boolean()))
      throw invalid_param(param, fmt::format("'{}' must be a JSON schema (JSON nested at most {} "
                                             "levels deep)",
                                             param, kMaxJsonDepth));
    return parsed.dump();
  }
  throw invalid_param(param, fmt::format("'{}' must be a JSON schema (an object)", param));
}

std::string nonempty_string(const ojson& v, const std::string& param) {
  if (!v.is_string() || v.get_ref<const std::string&>().empty())
    throw invalid_param(param, fmt::format("'{}' must be a non-empty string", param));
  return v.get<std::string>();
}

// The regular expression that matches exactly one of the strings.
std::string choice_regex(const ojson& v, const std::string& param) {
  if (!v.is_array() || v.empty())
    throw invalid_param(param, fmt::format("'{}' must be a non-empty array of strings", param));
  std::string re;
  for (const ojson& c : v) {
    const std::string s = nonempty_string(c, param);
    if (!re.empty()) re += '|';
    re += '(';
    for (char ch : s) {
      if (std::string_view("\\^$.|?*+()[]{}/").find(ch) != std::string_view::npos) re += '\\';
      re += ch;
    }
    re += ')';
  }
  return re;
}

StructuredOutput from_response_format(const ojson& rf) {
  if (!rf.is_object())
    throw invalid_param("response_format", "'response_format' must be an object");
  const ojson* t = present_field(rf, "type");
  if (!t || !t->is_string())  // as OpenAI: a format without its type is no format
    throw invalid_param("response_format",
                        "'response_format.type' is required (text, json_object, json_schema or "
                        "structural_tag)");
  const std::string type = t->get<std::string>();
  if (type == "text") return {};
  if (type == "json_object") return {Kind::Json, ""};
  if (type == "json_schema") {
    const ojson* js = present_field(rf, "json_schema");
    if (!js || !js->is_object())
      throw invalid_param("response_format", "'response_format.json_schema' must be an object");
    const ojson* schema = present_field(*js, "schema");
    // A json_schema without a schema allows any JSON object.
    return {Kind::JsonSchema,
            schema ? schema_text(*schema, "response_format") : R"({"type": "object"})"};
  }
  if (type == "structural_tag") return {Kind::StructuralTag, rf.dump()};
  throw invalid_param("response_format",
                      fmt::format("response_format type '{}' is not one of text, json_object, "
                                  "json_schema, structural_tag",
                                  type));
}

// vLLM's structured_outputs object: exactly one of its keys.
StructuredOutput from_structured_outputs(const ojson& so) {
  const std::string p = "structured_outputs";
  if (!so.is_object()) throw invalid_param(p, "'structured_outputs' must be an object");
  std::vector<StructuredOutput> found;
  if (const ojson* v = present_field(so, "json"))
    found.push_back({Kind::JsonSchema, schema_text(*v, p)});
  if (const ojson* v = present_field(so, "regex"))
    found.push_back({Kind::Regex, nonempty_string(*v, p)});
  if (const ojson* v = present_field(so, "grammar"))
    found.push_back({Kind::Grammar, nonempty_string(*v, p)});
  if (const ojson* v = present_field(so, "choice"))
    found.push_back({Kind::Regex, choice_regex(*v, p)});
  if (const ojson* v = present_field(so, "json_object"); v && v->is_boolean() && v->get<bool>())
    found.push_back({Kind::Json, ""});
  if (const ojson* v = present_field(so, "structural_tag")) {
    const std::string text = v->is_string() ? v->get<std::string>() : v->dump();
    found.push_back({Kind::StructuralTag, text});
  }
  if (found.size() != 1)
    throw invalid_param(p,
                        "'structured_outputs' must have exactly one of json, regex, grammar, "
                        "choice, json_object, structural_tag");
  return found[0];
}

// The tag that one call of `tool` takes in the format: begin, the arguments, end. Mistral's
// calls are the entries of one JSON list: `list_entry` leaves its brackets to the caller.
ojson call_tag(const ojson& tool, ToolFormat format, bool list_entry) {
  const ojson& fn = tool["function"];
  const std::string name = ojson(fn["name"].get<std::string>()).dump();  // quoted, escaped
  ojson params = fn.contains("parameters") && fn["parameters"].is_object()
                     ? fn["parameters"]
                     : ojson{{"type", "object"}};
  ojson tag = {{"type", "tag"}};
  switch (format) {
    case ToolFormat::Llama3Json:
      tag["begin"] = "{\"name\": " + name + ", \"parameters\": ";
      tag["end"] = "}";
      break;
    case ToolFormat::Mistral:
      // [TOOL_CALLS] is a control token, which a grammar over text cannot write: the enforced
      // call is its JSON list (OutputFormat::forced_calls tells the parser).
      tag["begin"] =
          std::string(list_entry ? "" : "[") + "{\"name\": " + name + ", \"arguments\": ";
      tag["end"] = list_entry ? "}" : "}]";
      break;
    default:
      tag["begin"] = "<tool_call>\n{\"name\": " + name + ", \"arguments\": ";
      tag["end"] = "}\n</tool_call>";
      break;
  }
  tag["content"] = {{"type", "json_schema"}, {"json_schema", params}};
  return tag;
}

// One or more calls of the tags, separated as the format's parser splits them: Hermes' tags
// one per line, Llama 3's JSON objects by ';' (its parser's separator), Mistral's as the
// entries of one JSON list.
ojson several_calls(const ojson& tags, ToolFormat format) {
  const char* sep = format == ToolFormat::Llama3Json ? "; "
                    : format == ToolFormat::Mistral  ? ", "
                                                     : "\n";
  const ojson calls = {
      {"type", "tags_with_separator"}, {"tags", tags}, {"separator", sep}, {"at_least_one", true}};
  if (format != ToolFormat::Mistral) return calls;
  return {{"type", "sequence"},
          {"elements", ojson::array({ojson{{"type", "const_string"}, {"value", "["}}, calls,
                                     ojson{{"type", "const_string"}, {"value", "]"}}})}};
}

}  // namespace

bool needs_structured(const nlohmann::json& body) {
  auto given = [&](const char* f) {
    auto it = body.find(f);
    return it != body.end() && !it->is_null();
  };
  if (given("response_format")) return true;
  for (const char* f : kGuidedFields)
    if (given(f)) return true;
  return false;
}

StructuredRequest parse_structured(const ojson& body) {
  std::vector<StructuredRequest> found;
  auto add = [&](StructuredOutput s, const char* param) {
    StructuredRequest r;
    r.output = std::move(s);
    r.param = param;
    found.push_back(std::move(r));
  };
  if (const ojson* rf = present_field(body, "response_format")) {
    StructuredOutput s = from_response_format(*rf);
    if (s.active()) add(std::move(s), "response_format");
  }
  if (const ojson* v = present_field(body, "guided_json"))
    add(StructuredOutput{Kind::JsonSchema, schema_text(*v, "guided_json")}, "guided_json");
  if (const ojson* v = present_field(body, "guided_regex"))
    add(StructuredOutput{Kind::Regex, nonempty_string(*v, "guided_regex")}, "guided_regex");
  if (const ojson* v = present_field(body, "guided_grammar"))
    add(StructuredOutput{Kind::Grammar, nonempty_string(*v, "guided_grammar")}, "guided_grammar");
  if (const ojson* v = present_field(body, "guided_choice"))
    add(StructuredOutput{Kind::Regex, choice_regex(*v, "guided_choice")}, "guided_choice");
  if (const ojson* v = present_field(body, "structured_outputs"))
    add(from_structured_outputs(*v), "structured_outputs");
  if (found.size() > 1)
    throw invalid_param(found[1].param,
                        fmt::format("'{}' and '{}' both constrain the output: give one",
                                    found[0].param, found[1].param));
  return found.empty() ? StructuredRequest{} : found[0];
}

StructuredOutput tool_choice_grammar(const ToolRequest& tools, ToolFormat format) {
  if (!tools.tools.is_array()) return {};
  if (tools.choice != ToolChoiceKind::Required && tools.choice != ToolChoiceKind::Named) return {};
  const bool several = tools.parallel_calls;
  ojson alternatives = ojson::array();
  for (const ojson& t : tools.tools) {
    if (tools.choice == ToolChoiceKind::Named && t["function"]["name"] != tools.choice_name)
      continue;
    alternatives.push_back(call_tag(t, format, /*list_entry=*/several));
  }
  ojson fmt_obj;
  if (several)
    fmt_obj = several_calls(alternatives, format);
  else if (alternatives.size() == 1)
    fmt_obj = alternatives[0];
  else
    fmt_obj = ojson{{"type", "or"}, {"elements", alternatives}};
  const ojson tag = {{"type", "structural_tag"}, {"format", fmt_obj}};
  return {Kind::StructuralTag, tag.dump()};
}

}  // namespace nc::server
