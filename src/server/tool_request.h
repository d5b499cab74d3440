// The tool-calling part of a chat request: `tools`, `tool_choice`, and the messages as the
// model's Jinja template reads them (role `tool` turns with tool_call_id, assistant turns with
// `tool_calls`). A pure function of the body (ordered_json: the template writes the tools' keys
// in the request's order, as Hugging Face does); every failure is an ApiError (400) naming the
// field.
//
// OpenAI sends a call's `arguments` as a JSON string; the templates (Qwen, Llama 3, Hermes)
// expect an object, so an object's text is parsed here; other text stays a string (a model's
// own arguments need not be an object, and its answer comes back in the next turn).
//
// Call ids in the messages are kept as the client sent them; template_messages() fits them to
// the template's format when it renders (Mistral's need 9 alphanumerics: server/tool_call_id.h).
//
// tool_choice: "none" renders the tools but never parses calls; "auto" parses them; "required"
// and a named function are validated here (the name must be one of the tools) and enforced by a
// grammar (server/structured_request.h, tool_choice_grammar): the output is one or more such
// calls, or exactly one with `parallel_tool_calls: false` (OpenAI's default is true).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "server/tool_calls.h"

namespace nc::server {

enum class ToolChoiceKind { None, Auto, Required, Named };

struct ToolRequest {
  // Tools given, tool turns in the messages, or chat_template_kwargs: render through Jinja.
  bool active = false;
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // an array, or null when none
  ToolChoiceKind choice = ToolChoiceKind::Auto;
  std::string choice_name;     // Named
  bool parallel_calls = true;  // parallel_tool_calls: a forced choice may make several calls
  // chat_template_kwargs (vLLM's field): more variables for the template, e.g.
  // {"enable_thinking": false}; an object, or null for none (tokenizer/jinja_render.h).
  nlohmann::ordered_json template_kwargs;
  // Parse the output for calls: tools given and tool_choice not "none".
  bool parse_calls() const { return tools.is_array() && choice != ToolChoiceKind::None; }
};

// Whether the body needs parse_tool_request: it has tools, chat_template_kwargs, or a message
// with role tool or tool_calls (checked on the already parsed body, so the ordered parse happens
// only then).
bool needs_tool_request(const nlohmann::json& body);

// body: the chat request's body parsed with key order kept; the messages already validated by
// the ordinary parser (roles, contents).
ToolRequest parse_tool_request(const nlohmann::ordered_json& body);

// The messages as the template of `format` reads them: every assistant tool_calls[k].id and tool
// tool_call_id through fit_tool_call_id (unchanged unless the format is Mistral and the id is not
// 9 alphanumerics).
nlohmann::ordered_json template_messages(const ToolRequest& r, ToolFormat format);

}  // namespace nc::server
