// The Jinja glue: renders a chat template string with llama.cpp's Jinja engine (common/jinja,
// built as nc_llama_jinja from third_party/llama-jinja, cmake/llama_jinja.cmake), the way
// Hugging Face's apply_chat_template renders it with jinja2: trim_blocks and lstrip_blocks on,
// the variables messages, tools (only when given), add_generation_prompt, bos_token, eos_token
// and any extra ones, and the functions raise_exception and strftime_now.
//
// Provenance: every string of `messages` except the roles, and every string of `tools`, is
// marked as input; the engine keeps the mark through filters and concatenation. The output says
// which byte ranges the template wrote itself (template_spans): only those may hold control
// tokens (Tokenizer::encode_marked). The engine's tojson does not keep the mark, so every place
// where the text holds an input string as tojson writes it ("..." with JSON escapes) is taken
// out of the template spans too (Llama 3.1 writes tool results with tojson). Roles are left
// unmarked because templates build markers from them ('<|' + role + '|>', Phi-3);
// chat_template.cc accepts only known roles.
//
// Errors: the template's raise_exception(msg) is an nc::Error (InvalidArgument) whose message
// holds msg; anything else the engine cannot do (a syntax it does not parse, a missing filter)
// is a JinjaEngineError, which callers may answer with a fallback.
#pragma once
#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"  // nc::TextSpan

namespace nc {

struct JinjaChatInput {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null: the template sees no `tools` variable
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  // strftime_now's clock (local time, as Python's datetime.now()); 0 means the current time.
  std::time_t now = 0;
  // More variables from the request (chat_template_kwargs: an object, e.g.
  // {"enable_thinking": false}); null for none. Their strings are input, as the messages' are;
  // a name the engine defines (messages, tools, documents, add_generation_prompt, bos_token,
  // eos_token, true/false/none, raise_exception, strftime_now, built-ins such as range) is
  // refused (InvalidArgument).
  nlohmann::ordered_json extra;
};

struct JinjaRendered {
  std::string text;
  std::vector<TextSpan> template_spans;  // sorted, disjoint: what the template wrote itself
};

struct JinjaEngineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bounds on one render, so that a model's template cannot crash or stall the server: nesting
// stops at 400 statements, a range() at 100,000 items (Jinja2's sandbox, as Hugging Face
// renders), a run at `n` statements from each top-level one (2,000,000 by default: a Gemma 4
// chat of 800 messages runs ~550,000). Each is an error naming the bound.
void set_jinja_statement_limit(int64_t n);

JinjaRendered render_jinja(const std::string& template_str, const JinjaChatInput& input);

// Whether the template reads a message's content as a list of typed parts (the engine's
// capability probe; cached per template). Templates that only take strings get text parts
// joined (chat_template.cc).
bool jinja_supports_typed_content(const std::string& template_str);

}  // namespace nc
