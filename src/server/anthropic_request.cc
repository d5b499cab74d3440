#include "server/anthropic_request.h"

#include <fmt/format.h>

#include "server/json_fields.h"
#include "server/structured_request.h"

namespace nc::server {

namespace {

using ojson = nlohmann::ordered_json;

// What stands for a block the model cannot read (an image, a document, a tool reference...):
// refusing the request would make every later turn of an agent's conversation fail too, since
// clients resend the whole history.
std::string placeholder(const std::string& type) {
  return fmt::format("[{} omitted: this model reads text only]", type);
}

// The text of one content block: a text block's text, a placeholder for other kinds.
std::string block_text(const ojson& block, const std::string& at) {
  if (!block.is_object()) throw field_error(at, "must be an object");
  const std::string& type = required_string(block, "type", at);
  if (type == "text") return required_string(block, "text", at);
  return placeholder(type);
}

// A string, or blocks' texts joined with "\n".
std::string text_of(const ojson& c, const std::string& at) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw field_error(at, "must be a string or an array of content blocks");
  std::string text;
  for (size_t j = 0; j < c.size(); ++j) {
    if (j > 0) text += "\n";
    text += block_text(c[j], fmt::format("{}.{}", at, j));
  }
  return text;
}

void add_tool_result(const ojson& block, const std::string& at, ojson& messages) {
  const ojson* c = present_field(block, "content");
  std::string text = c ? text_of(*c, at + ".content") : std::string();
  if (const ojson* err = present_field(block, "is_error"); err && *err == true)
    text = "Error: " + text;
  messages.push_back({{"role", "tool"},
                      {"tool_call_id", required_string(block, "tool_use_id", at)},
                      {"content", std::move(text)}});
}

void add_user(const ojson& content, const std::string& at, ojson& messages) {
  if (content.is_string()) {
    messages.push_back({{"role", "user"}, {"content", content}});
    return;
  }
  if (!content.is_array()) throw field_error(at, "must be a string or an array of content blocks");
  std::string text;
  bool any_text = false;
  for (size_t j = 0; j < content.size(); ++j) {
    const ojson& block = content[j];
    const std::string p = fmt::format("{}.{}", at, j);
    if (!block.is_object()) throw field_error(p, "must be an object");
    const std::string& type = required_string(block, "type", p);
    if (type == "tool_result") {
      add_tool_result(block, p, messages);
    } else if (type != "thinking" && type != "redacted_thinking") {
      if (any_text) text += "\n";
      text += block_text(block, p);
      any_text = true;
    }
  }
  if (any_text) messages.push_back({{"role", "user"}, {"content", text}});
}

void add_assistant(const ojson& content, const std::string& at, ojson& messages) {
  if (content.is_string()) {
    messages.push_back({{"role", "assistant"}, {"content", content}});
    return;
  }
  if (!content.is_array()) throw field_error(at, "must be a string or an array of content blocks");
  std::string text;
  ojson calls = ojson::array();
  for (size_t j = 0; j < content.size(); ++j) {
    const ojson& block = content[j];
    const std::string p = fmt::format("{}.{}", at, j);
    if (!block.is_object()) throw field_error(p, "must be an object");
    const std::string& type = required_string(block, "type", p);
    if (type == "text") {
      if (!text.empty()) text += "\n";
      text += required_string(block, "text", p);
    } else if (type == "tool_use") {
      const ojson* input = present_field(block, "input");
      if (!input || !input->is_object()) throw field_error(p + ".input", "must be an object");
      calls.push_back(
          {{"id", required_string(block, "id", p)},
           {"type", "function"},
           {"function",
            {{"name", required_string(block, "name", p)}, {"arguments", input->dump()}}}});
    } else if (type != "thinking" && type != "redacted_thinking") {
      throw unsupported(p + ".type", fmt::format("'{}' content in an assistant turn", type));
    }
  }
  ojson m = {{"role", "assistant"}, {"content", text}};
  if (!calls.empty()) {
    if (text.empty()) m["content"] = nullptr;
    m["tool_calls"] = std::move(calls);
  }
  messages.push_back(std::move(m));
}

ojson chat_messages(const ojson& b) {
  ojson messages = ojson::array();
  if (const ojson* sys = present_field(b, "system"))
    messages.push_back({{"role", "system"}, {"content", text_of(*sys, "system")}});
  const ojson* ms = present_field(b, "messages");
  if (!ms || !ms->is_array() || ms->empty())
    throw field_error("messages", "is required and must be a non-empty array");
  for (size_t i = 0; i < ms->size(); ++i) {
    const ojson& m = (*ms)[i];
    const std::string at = fmt::format("messages.{}", i);
    if (!m.is_object()) throw field_error(at, "must be an object");
    const std::string& role = required_string(m, "role", at);
    const ojson* content = present_field(m, "content");
    if (!content) throw field_error(at + ".content", "is required");
    if (role == "user") {
      add_user(*content, at + ".content", messages);
    } else if (role == "assistant") {
      add_assistant(*content, at + ".content", messages);
    } else {
      throw field_error(at + ".role", fmt::format("'{}' is not one of user, assistant", role));
    }
  }
  return messages;
}

ojson chat_tools(const ojson& tools) {
  if (!tools.is_array()) throw field_error("tools", "must be an array");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = fmt::format("tools.{}", i);
    if (!tools[i].is_object()) throw field_error(at, "must be an object");
    if (const ojson* t = present_field(tools[i], "type"); t && *t != "custom")
      throw unsupported(
          at + ".type",
          fmt::format("tool type {} (only custom tools, with an input_schema)", t->dump()));
    ojson fn = {{"name", required_string(tools[i], "name", at)}};
    if (const ojson* d = present_field(tools[i], "description")) fn["description"] = *d;
    if (const ojson* s = present_field(tools[i], "input_schema")) fn["parameters"] = *s;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

void add_tool_choice(const ojson& c, ojson& chat) {
  if (!c.is_object()) throw field_error("tool_choice", "must be an object");
  const std::string& type = required_string(c, "type", "tool_choice");
  if (type == "auto" || type == "none") {
    chat["tool_choice"] = type;
  } else if (type == "any") {
    chat["tool_choice"] = "required";
  } else if (type == "tool") {
    chat["tool_choice"] = {{"type", "function"},
                           {"function", {{"name", required_string(c, "name", "tool_choice")}}}};
  } else {
    throw field_error("tool_choice.type",
                      fmt::format("'{}' is not one of auto, any, tool, none", type));
  }
  if (const ojson* p = present_field(c, "disable_parallel_tool_use")) {
    if (!p->is_boolean())
      throw field_error("tool_choice.disable_parallel_tool_use", "must be a boolean");
    chat["parallel_tool_calls"] = !p->get<bool>();
  }
}

// output_config.format {type: json_schema, schema}: chat's response_format (enforced by the
// grammar, as there). effort is accepted and ignored.
void add_output_format(const ojson& oc, ojson& chat) {
  if (!oc.is_object()) throw field_error("output_config", "must be an object");
  const ojson* f = present_field(oc, "format");
  if (!f) return;
  if (!f->is_object()) throw field_error("output_config.format", "must be an object");
  const std::string& type = required_string(*f, "type", "output_config.format");
  if (type != "json_schema")
    throw field_error("output_config.format.type", fmt::format("'{}' is not json_schema", type));
  const ojson* schema = present_field(*f, "schema");
  if (!schema) throw field_error("output_config.format.schema", "is required");
  chat["response_format"] = {{"type", "json_schema"},
                             {"json_schema", {{"name", "output"}, {"schema", *schema}}}};
}

// thinking {type: enabled | disabled}: the templates' switch for reasoning (Qwen3's
// enable_thinking, DeepSeek V3.1's thinking); absent or another type: the template's default.
void add_thinking(const ojson& t, ojson& chat) {
  if (!t.is_object()) throw field_error("thinking", "must be an object");
  const std::string& type = required_string(t, "type", "thinking");
  if (type != "enabled" && type != "disabled") return;  // e.g. "adaptive": the default
  const bool on = type == "enabled";
  chat["chat_template_kwargs"] = {{"enable_thinking", on}, {"thinking", on}};
}

ojson chat_body(const ojson& b) {
  if (const ojson* t = present_field(b, "temperature"); t && t->is_number())
    if (t->get<double>() < 0.0 || t->get<double>() > 1.0)
      throw field_error("temperature", "must be between 0 and 1");
  // vLLM's chat extensions for structured output: this API's is output_config.format.
  auto refuse_chat_field = [&](const char* k) {
    if (present_field(b, k))
      throw unsupported(k, fmt::format("'{}' (the Messages API's structured output is "
                                       "'output_config.format')",
                                       k));
  };
  refuse_chat_field("response_format");
  for (const char* k : kGuidedFields) refuse_chat_field(k);
  ojson chat = {{"messages", chat_messages(b)}};
  // A last assistant turn (prefill) is continued: the answer is the text that follows it.
  if (chat["messages"].back().value("role", "") == "assistant")
    chat["continue_final_message"] = true;
  for (const char* k : {"model", "max_tokens", "temperature", "top_p", "top_k", "stream"})
    if (const ojson* v = present_field(b, k)) chat[k] = *v;
  if (const ojson* v = present_field(b, "stop_sequences")) {
    if (!v->is_array()) throw field_error("stop_sequences", "must be an array of strings");
    chat["stop"] = *v;
  }
  if (const ojson* v = present_field(b, "tools")) chat["tools"] = chat_tools(*v);
  if (const ojson* v = present_field(b, "tool_choice")) add_tool_choice(*v, chat);
  if (const ojson* oc = present_field(b, "output_config")) add_output_format(*oc, chat);
  if (const ojson* t = present_field(b, "thinking")) add_thinking(*t, chat);
  if (const ojson* m = present_field(b, "metadata"); m && m->is_object())
    if (const ojson* u = present_field(*m, "user_id")) chat["user"] = *u;
  return chat;
}

// The Anthropic name of a chat field in an error ("stop" -> "stop_sequences", "messages[3]..."
// -> "messages": the chat messages are not the Anthropic ones one for one).
std::string anthropic_param(const std::string& p) {
  if (p.starts_with("stop")) return "stop_sequences";
  if (p.starts_with("messages")) return "messages";
  if (p.starts_with("tools[")) return "tools";
  if (p.starts_with("tool_choice")) return "tool_choice";
  if (p.starts_with("response_format")) return "output_config.format";
  if (p == "parallel_tool_calls") return "tool_choice.disable_parallel_tool_use";
  if (p == "user") return "metadata.user_id";
  return p;
}

}  // namespace

ParsedRequest parse_anthropic_request(std::string_view body, const ParseLimits& limits) {
  const ojson b = parse_ordered_object(body);
  if (!present_field(b, "max_tokens")) throw field_error("max_tokens", "is required");
  const std::string chat = chat_body(b).dump();  // its errors name Anthropic fields already
  try {
    ParsedRequest r = parse_request(ApiKind::Chat, chat, limits);
    r.max_tokens_is_cap = true;
    return r;
  } catch (const ApiError& e) {
    throw with_param(e, anthropic_param(e.param()));
  }
}

TokenizeRequest parse_anthropic_count(std::string_view body) {
  const ojson b = parse_ordered_object(body);
  ojson chat = chat_body(b);
  chat.erase("max_tokens");
  chat.erase("stream");
  const std::string text = chat.dump();
  try {
    return parse_tokenize(text);
  } catch (const ApiError& e) {
    throw with_param(e, anthropic_param(e.param()));
  }
}

nlohmann::json anthropic_error_json(const ApiError& e) {
  const int s = e.status();
  const char* type = s == 401   ? "authentication_error"
                     : s == 403 ? "permission_error"
                     : s == 404 ? "not_found_error"
                     : s == 413 ? "request_too_large"
                     : s == 429 ? "rate_limit_error"
                     : s == 529 ? "overloaded_error"
                     : s >= 500 ? "api_error"
                                : "invalid_request_error";
  return {{"type", "error"}, {"error", {{"type", type}, {"message", e.what()}}}};
}

}  // namespace nc::server
