// Structured output in a request (docs/server.md): which grammar, if any, constrains the output.
//
// From the body (parse_structured, a pure function; ApiError 400 naming the field):
//   - OpenAI's `response_format`: {"type": "text"} (none), {"type": "json_object"} (a JSON
//     object), {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (JSON valid
//     for the schema; always enforced strictly), and xgrammar's {"type": "structural_tag",
//     "format": {...}};
//   - vLLM's extension fields, old and new names: `guided_json` (a schema, object or string),
//     `guided_regex`, `guided_grammar` (EBNF), `guided_choice` (a list of strings: exactly one of
//     them), and `structured_outputs` {"json" | "regex" | "grammar" | "choice" | "json_object" |
//     "structural_tag"}.
// At most one of them may be given. The field that set it is kept (StructuredRequest::param) so
// that a grammar that does not compile gets its 400 naming it.
//
// From tool_choice (tool_choice_grammar): "required" or a named function, enforced by a
// structural tag in the model's own tool-call format (the OutputFormat the template shows): one
// or more calls with parallel_tool_calls (the default; separated as the format's parser splits
// them), exactly one without; each call's arguments valid for that tool's parameter schema.
#pragma once
#include <array>
#include <string>

#include <nlohmann/json.hpp>

#include "nanocascade/engine.h"
#include "server/tool_calls.h"
#include "server/tool_request.h"

namespace nc::server {

struct StructuredRequest {
  StructuredOutput output;  // kind None: no constraint
  std::string param;        // the request field that asked for it
};

// Whether the body has any of the fields above (then parse_structured reads it, key order kept:
// a schema's properties are generated in the order the request gives them).
bool needs_structured(const nlohmann::json& body);

// vLLM's chat-API extensions for structured output (beside OpenAI's response_format); the
// Responses and Messages APIs, which have their own field, refuse them.
inline constexpr std::array<const char*, 5> kGuidedFields = {
    "guided_json", "guided_regex", "guided_grammar", "guided_choice", "structured_outputs"};
StructuredRequest parse_structured(const nlohmann::ordered_json& body);

// The grammar that enforces tool_choice "required" / named for the format; kind None when
// tool_choice does not force a call.
StructuredOutput tool_choice_grammar(const ToolRequest& tools, ToolFormat format);

}  // namespace nc::server
