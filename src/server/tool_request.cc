#include "server/tool_request.h"

#include <fmt/format.h>

#include "server/api_error.h"
#include "server/json_fields.h"
#include "server/tool_call_id.h"

namespace nc::server {

namespace {

using ojson = nlohmann::ordered_json;

ojson parse_tools(const ojson& t) {
  if (!t.is_array())
    throw field_error("tools", fmt::format("must be an array, got {}", t.type_name()));
  if (t.empty()) return nullptr;  // as no tools
  for (size_t i = 0; i < t.size(); ++i) {
    const std::string p = fmt::format("tools[{}]", i);
    const ojson& tool = t[i];
    if (!tool.is_object()) throw field_error(p, "must be an object");
    const ojson* type = present_field(tool, "type");
    if (!type || *type != "function")
      throw field_error(p + ".type", "must be \"function\" (the only tool type)");
    const ojson* f = present_field(tool, "function");
    if (!f || !f->is_object())
      throw field_error(p + ".function", "is required and must be an object");
    required_string(*f, "name", p + ".function", true);
    if (const ojson* d = present_field(*f, "description"); d && !d->is_string())
      throw field_error(p + ".function.description", "must be a string");
    if (const ojson* s = present_field(*f, "parameters"); s && !s->is_object())
      throw field_error(p + ".function.parameters", "must be an object (a JSON schema)");
  }
  return t;
}

void parse_choice(const ojson& body, ToolRequest& r) {
  const ojson* c = present_field(body, "tool_choice");
  if (!c) {
    r.choice = r.tools.is_array() ? ToolChoiceKind::Auto : ToolChoiceKind::None;
    return;
  }
  if (c->is_string()) {
    const std::string& s = c->get_ref<const std::string&>();
    if (s == "none")
      r.choice = ToolChoiceKind::None;
    else if (s == "auto")
      r.choice = ToolChoiceKind::Auto;
    else if (s == "required")
      r.choice = ToolChoiceKind::Required;
    else
      throw field_error("tool_choice", fmt::format("must be none, auto, required or an object, got "
                                                   "'{}'",
                                                   s));
  } else if (c->is_object()) {
    const ojson* f = present_field(*c, "function");
    if (present_field(*c, "type") == nullptr || *present_field(*c, "type") != "function" || !f ||
        !f->is_object())
      throw field_error("tool_choice",
                        "as an object must be {\"type\": \"function\", \"function\": "
                        "{\"name\": ...}}");
    r.choice = ToolChoiceKind::Named;
    r.choice_name = required_string(*f, "name", "tool_choice.function", true);
  } else {
    throw field_error("tool_choice",
                      fmt::format("must be a string or an object, got {}", c->type_name()));
  }
  if (r.choice != ToolChoiceKind::None && !r.tools.is_array())
    throw field_error("tool_choice", "needs 'tools'");
  if (r.choice == ToolChoiceKind::Named) {
    for (const ojson& t : r.tools)
      if (t["function"]["name"] == r.choice_name) return;
    throw field_error("tool_choice", fmt::format("names the function '{}', which is not in 'tools'",
                                                 r.choice_name));
  }
}

// An assistant turn's tool_calls: arguments parsed from their JSON string into an object (other
// text kept as the string it is).
ojson parse_calls(const ojson& calls, const std::string& param) {
  if (!calls.is_array()) throw field_error(param, "must be an array");
  ojson out = ojson::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    const std::string p = fmt::format("{}[{}]", param, k);
    ojson call = calls[k];
    if (!call.is_object()) throw field_error(p, "must be an object");
    if (const ojson* type = present_field(call, "type"); type && *type != "function")
      throw field_error(p + ".type", "must be \"function\"");
    // As OpenAI: the id the tool turn's tool_call_id names (templates such as Mistral's write it).
    if (const ojson* id = present_field(call, "id"); !id || !id->is_string())
      throw field_error(p + ".id", "is required (a string): the id the tool result names");
    ojson* f = call.contains("function") ? &call["function"] : nullptr;
    if (!f || !f->is_object())
      throw field_error(p + ".function", "is required and must be an object");
    required_string(*f, "name", p + ".function", true);
    const ojson* a = present_field(*f, "arguments");
    if (a && a->is_string()) {
      // An object's text becomes the object (templates write it with tojson). Other text stays
      // a string: a model may write arguments that are no object (the output parser keeps them
      // as written), and a client sends the server's own answer back in the next turn.
      ojson parsed = parse_bounded(a->get_ref<const std::string&>());
      if (parsed.is_object()) (*f)["arguments"] = std::move(parsed);
    } else if (a && !a->is_object()) {
      throw field_error(p + ".function.arguments", "must be a JSON object's text");
    } else if (!a) {
      (*f)["arguments"] = ojson::object();
    }
    out.push_back(std::move(call));
  }
  return out;
}

ojson parse_message(const ojson& m, size_t i) {
  const std::string p = fmt::format("messages[{}]", i);
  ojson out = m;
  if (out["role"] == "developer") out["role"] = "system";
  if (out["role"] == "tool") {
    const ojson* id = present_field(m, "tool_call_id");
    if (!id || !id->is_string())
      throw field_error(p + ".tool_call_id", "is required (a string) for role 'tool'");
  }
  if (const ojson* calls = present_field(m, "tool_calls")) {
    if (out["role"] != "assistant")
      throw field_error(p + ".tool_calls", "is only for role 'assistant'");
    out["tool_calls"] = parse_calls(*calls, p + ".tool_calls");
    if (!present_field(m, "content")) out["content"] = "";  // templates concatenate it
  }
  return out;
}

}  // namespace

bool needs_tool_request(const nlohmann::json& body) {
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) return true;
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null()) return true;
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) return true;
  if (auto k = body.find("chat_template_kwargs"); k != body.end() && !k->is_null()) return true;
  auto m = body.find("messages");
  if (m == body.end() || !m->is_array()) return false;
  for (const auto& msg : *m) {
    if (!msg.is_object()) continue;
    if (msg.value("role", "") == "tool") return true;
    if (auto c = msg.find("tool_calls"); c != msg.end() && !c->is_null()) return true;
  }
  return false;
}

ToolRequest parse_tool_request(const ojson& body) {
  ToolRequest r;
  r.active = true;
  if (const ojson* t = present_field(body, "tools")) r.tools = parse_tools(*t);
  parse_choice(body, r);
  if (const ojson* p = present_field(body, "parallel_tool_calls")) {
    if (!p->is_boolean())
      throw field_error("parallel_tool_calls",
                        fmt::format("must be a boolean, got {}", p->type_name()));
    r.parallel_calls = p->get<bool>();
  }
  if (const ojson* k = present_field(body, "chat_template_kwargs")) {
    if (!k->is_object())
      throw field_error("chat_template_kwargs",
                        fmt::format("must be an object, got {}", k->type_name()));
    r.template_kwargs = *k;
  }
  const ojson& msgs = body.at("messages");
  for (size_t i = 0; i < msgs.size(); ++i) r.messages.push_back(parse_message(msgs[i], i));
  return r;
}

ojson template_messages(const ToolRequest& r, ToolFormat format) {
  ojson msgs = r.messages;
  const auto fit = [format](ojson& id) {
    if (id.is_string()) id = fit_tool_call_id(format, id.get_ref<const std::string&>());
  };
  for (ojson& m : msgs) {
    if (auto id = m.find("tool_call_id"); id != m.end()) fit(*id);
    auto calls = m.find("tool_calls");
    if (calls == m.end() || !calls->is_array()) continue;
    for (ojson& call : *calls)
      if (auto id = call.find("id"); id != call.end()) fit(*id);
  }
  return msgs;
}

}  // namespace nc::server
