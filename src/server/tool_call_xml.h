// Qwen3-Coder's (and Qwen3.5's) XML tool calls: inside <tool_call>...</tool_call>,
//
//   <function=get_weather>
//   <parameter=city>
//   Paris
//   </parameter>
//   </function>
//
// A parameter's value is raw text (one newline after its tag and one before its closing tag are
// layout). It becomes a JSON value by the type the request's tool schema gives the parameter
// (integer, number, boolean, null, object, array: parsed when it parses as one; string and
// anything else: the text), as vLLM's qwen3_coder parser does; a parameter the schema does not
// name stays a string.
#pragma once
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/tool_calls.h"

namespace nc::server {

// Per function name, per parameter, its JSON-schema "type" ("" when not one string).
using ParamTypes = std::map<std::string, std::map<std::string, std::string>>;
struct ParamTypeTable {
  ParamTypes types;
};

// From a request's tools (OpenAI's [{"type": "function", "function": {name, parameters}}]).
ParamTypes param_types_of(const nlohmann::ordered_json& tools);

// One call's body (the text between <tool_call> and </tool_call>, the end possibly cut) as a
// call; false when it holds no <function=...>. types may be null.
bool xml_call(std::string_view body, const ParamTypes* types, ToolCall& out);

}  // namespace nc::server
