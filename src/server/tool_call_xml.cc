// Qwen3-Coder's XML tool calls (server/tool_call_xml.h).
#include "server/tool_call_xml.h"

#include <algorithm>
#include <cctype>

namespace nc::server {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";

std::string_view strip_layout(std::string_view v) {
  if (v.starts_with('\n')) v.remove_prefix(1);
  if (v.ends_with('\n')) v.remove_suffix(1);
  return v;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

// The value as the schema's type has it, else the text.
ojson typed_value(std::string_view text, const std::string& type) {
  if (type.empty() || type == "string") return std::string(text);
  if (type == "boolean") {
    const std::string t = lower(text);
    if (t == "true" || t == "false") return t == "true";
    return std::string(text);
  }
  if (type == "null" && lower(text) == "null") return nullptr;
  const ojson j = ojson::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  const bool fits = (type == "integer" && j.is_number_integer()) ||
                    (type == "number" && j.is_number()) || (type == "object" && j.is_object()) ||
                    (type == "array" && j.is_array());
  return fits ? j : ojson(std::string(text));
}

}  // namespace

ParamTypes param_types_of(const nlohmann::ordered_json& tools) {
  ParamTypes out;
  if (!tools.is_array()) return out;
  for (const auto& tool : tools) {
    const auto* fn = tool.is_object() && tool.contains("function") ? &tool["function"] : &tool;
    if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) continue;
    auto& params = out[(*fn)["name"].get<std::string>()];
    const auto p = fn->find("parameters");
    if (p == fn->end() || !p->is_object() || !p->contains("properties")) continue;
    for (const auto& [name, schema] : (*p)["properties"].items()) {
      const bool typed =
          schema.is_object() && schema.contains("type") && schema["type"].is_string();
      params[name] = typed ? schema["type"].get<std::string>() : "";
    }
  }
  return out;
}

bool xml_call(std::string_view body, const ParamTypes* types, ToolCall& out) {
  const size_t f = body.find(kFunctionOpen);
  if (f == std::string_view::npos) return false;
  const size_t name_end = body.find('>', f);
  if (name_end == std::string_view::npos) return false;
  const std::string name(
      body.substr(f + kFunctionOpen.size(), name_end - f - kFunctionOpen.size()));
  if (name.empty()) return false;
  const std::map<std::string, std::string>* param_types = nullptr;
  if (types != nullptr)
    if (auto it = types->find(name); it != types->end()) param_types = &it->second;
  std::string_view rest = body.substr(name_end + 1);
  rest = rest.substr(0, rest.find(kFunctionClose));
  ojson args = ojson::object();
  size_t from = 0;
  for (size_t p; (p = rest.find(kParamOpen, from)) != std::string_view::npos;) {
    const size_t key_end = rest.find('>', p);
    if (key_end == std::string_view::npos) break;
    const std::string key(rest.substr(p + kParamOpen.size(), key_end - p - kParamOpen.size()));
    const size_t close = rest.find(kParamClose, key_end);
    // Cut by the end inside a value: the value so far (the call is cut: finish_reason length).
    const std::string_view value = strip_layout(rest.substr(
        key_end + 1, (close == std::string_view::npos ? rest.size() : close) - key_end - 1));
    std::string type;
    if (param_types != nullptr)
      if (auto it = param_types->find(key); it != param_types->end()) type = it->second;
    args[key] = typed_value(value, type);
    if (close == std::string_view::npos) break;
    from = close + kParamClose.size();
  }
  out.name = name;
  out.arguments = args.dump();
  return true;
}

}  // namespace nc::server
