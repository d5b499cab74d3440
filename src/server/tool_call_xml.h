// The tool calls whose arguments are tagged text, not JSON: Qwen3-Coder's (and Qwen3.5's) and
// GLM-4.5/4.6/4.7's.
//
// Qwen3-Coder's XML: inside <tool_call>...</tool_call>,
//
//   <function=get_weather>
//   <parameter=city>
//   Paris
//   </parameter>
//   </function>
//
// A parameter's value is raw text (one newline after its tag and one before its closing tag are
// layout). It becomes a JSON value by the types the request's tool schema gives the parameter
// (integer, number, boolean, object, array: the first that the text parses as; string and
// anything else: the text), as vLLM's qwen3_coder parser does; `null` is null whatever the type;
// a parameter the schema does not name stays a string. Model output is untrusted: a value
// nested deeper than kMaxJsonDepth (64, parse_bounded) stays text, and bytes that are not UTF-8 are
// replaced.
//
// GLM's: inside <tool_call>...</tool_call>, the function's name, then per argument
//
//   <arg_key>city</arg_key>
//   <arg_value>Paris</arg_value>
//
// (a newline between the tags in 4.5 and 4.6, none in 4.7, at times the two characters \n; all
// are read; a value after other text is not its key's, and that pair is skipped). The templates
// write a string as it is and any other value as JSON, so, as vLLM's glm45 parser reads them, a
// string parameter's value is its text (`null` too), and any other parameter's is typed by the
// schema as above, or, where the schema names no type ($ref, enum) or not the parameter, is the
// JSON its text parses as (an object, array, number, boolean or null), else the text.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/tool_calls.h"

namespace nc::server {

// Per function name, per parameter, the JSON-schema types it may take other than null (a "type"
// string or list, or anyOf's entries' types, as pydantic writes Optional[int]); empty: a string.
using ParamTypes = std::map<std::string, std::map<std::string, std::vector<std::string>>>;
struct ParamTypeTable {
  ParamTypes types;
};

// From a request's tools (OpenAI's [{"type": "function", "function": {name, parameters}}]).
ParamTypes param_types_of(const nlohmann::ordered_json& tools);

// One call's body (the text between <tool_call> and </tool_call>, the end possibly cut) as a
// call; false when it holds no <function=...>. types may be null.
bool xml_call(std::string_view body, const ParamTypes* types, ToolCall& out);

// One GLM call's body as a call; false when it names no function. types may be null.
bool glm_call(std::string_view body, const ParamTypes* types, ToolCall& out);

}  // namespace nc::server
