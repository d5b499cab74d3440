// Qwen3-Coder's and GLM's tagged tool calls (server/tool_call_xml.h).
#include "server/tool_call_xml.h"

#include "server/json_fields.h"

#include <algorithm>
#include <cctype>

namespace nc::server {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";
constexpr std::string_view kKeyOpen = "<arg_key>";
constexpr std::string_view kKeyClose = "</arg_key>";
constexpr std::string_view kValueOpen = "<arg_value>";
constexpr std::string_view kValueClose = "</arg_value>";

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

// The value as one of the schema's types has it (in their order), else the text.
ojson typed_value(std::string_view text, const std::vector<std::string>& types) {
  if (types.empty()) return std::string(text);
  const std::string low = lower(text);
  if (low == "null") return nullptr;
  for (const std::string& type : types) {
    if (type == "boolean" && (low == "true" || low == "false")) return low == "true";
    if (type != "integer" && type != "number" && type != "object" && type != "array") continue;
    const ojson j = parse_bounded(text);  // a model's text: past kMaxJsonDepth, discarded
    if ((type == "integer" && j.is_number_integer()) || (type == "number" && j.is_number()) ||
        (type == "object" && j.is_object()) || (type == "array" && j.is_array()))
      return j;
  }
  return std::string(text);
}

// A parameter schema's types other than null: "type" (a string or a list), else anyOf's.
std::vector<std::string> schema_types(const ojson& schema) {
  std::vector<std::string> out;
  if (!schema.is_object()) return out;
  auto add = [&](const ojson& t) {
    if (t.is_string() && t != "null") out.push_back(t.get<std::string>());
  };
  if (const auto t = schema.find("type"); t != schema.end()) {
    if (t->is_array()) {
      for (const ojson& e : *t) add(e);
    } else {
      add(*t);
    }
  } else if (const auto any = schema.find("anyOf"); any != schema.end() && any->is_array()) {
    for (const ojson& e : *any)
      if (e.is_object() && e.contains("type")) add(e["type"]);
  }
  return out;
}

using FunctionParams = std::map<std::string, std::vector<std::string>>;

// The schema's parameters of function `name`, or null.
const FunctionParams* params_of(const ParamTypes* types, const std::string& name) {
  if (types == nullptr) return nullptr;
  const auto it = types->find(name);
  return it == types->end() ? nullptr : &it->second;
}

// The types a parameter's text is read as; `unnamed` for one the schema does not name.
const std::vector<std::string>& types_of(const FunctionParams* params, const std::string& key,
                                         const std::vector<std::string>& unnamed) {
  if (params != nullptr)
    if (auto it = params->find(key); it != params->end()) return it->second;
  return unnamed;
}

// The call's arguments as JSON text (a value cut inside a UTF-8 character by max_tokens is
// replaced, not a 500).
std::string dump_arguments(const ojson& args) {
  return args.dump(-1, ' ', false, ojson::error_handler_t::replace);
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
    for (const auto& [name, schema] : (*p)["properties"].items())
      params[name] = schema_types(schema);
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
  const FunctionParams* params = params_of(types, name);
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
    static const std::vector<std::string> kText;
    args[key] = typed_value(value, types_of(params, key, kText));
    if (close == std::string_view::npos) break;
    from = close + kParamClose.size();
  }
  out.name = name;
  out.arguments = dump_arguments(args);
  return true;
}

// Whether `gap` (between a GLM key's and its value's tags) is layout: blanks, and the two
// characters \n that GLM-4.7 models write there at times.
bool glm_layout(std::string_view gap) {
  for (size_t i = 0; i < gap.size(); ++i) {
    if (gap.substr(i).starts_with("\\n")) {
      ++i;
    } else if (std::string_view(" \t\r\n").find(gap[i]) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// A GLM value by its parameter's schema: a string parameter's text as written (the template
// writes strings as they are, `null` too); any other, or one without types, as JSON where the
// text parses as JSON of an allowed type (vLLM's glm45 parser decodes all but strings).
ojson glm_value(std::string_view text, const std::vector<std::string>& types) {
  static const std::vector<std::string> kJson = {"boolean", "number", "object", "array"};
  if (types.size() == 1 && types[0] == "string") return std::string(text);
  return typed_value(text, types.empty() ? kJson : types);
}

bool glm_call(std::string_view body, const ParamTypes* types, ToolCall& out) {
  const size_t first_tag = body.find('<');
  const std::string name(trim_blanks(body.substr(0, first_tag)));
  if (name.empty() || name.find_first_of(" \t\r\n") != std::string::npos) return false;
  const FunctionParams* params = params_of(types, name);
  static const std::vector<std::string> kUnnamed;  // read as JSON (glm_value)
  ojson args = ojson::object();
  std::string_view rest = first_tag == std::string_view::npos ? "" : body.substr(first_tag);
  for (size_t k; (k = rest.find(kKeyOpen)) != std::string_view::npos;) {
    const size_t key_end = rest.find(kKeyClose, k);
    if (key_end == std::string_view::npos) break;  // cut inside a key: no argument
    const std::string key(rest.substr(k + kKeyOpen.size(), key_end - k - kKeyOpen.size()));
    rest = rest.substr(key_end + kKeyClose.size());
    const size_t v = rest.find(kValueOpen);
    if (v == std::string_view::npos) break;  // cut before the value
    const bool paired = glm_layout(rest.substr(0, v));
    rest = rest.substr(v + kValueOpen.size());
    // Cut by the end inside a value: the value so far (the call is cut: finish_reason length).
    const size_t close = rest.find(kValueClose);
    // A value after other text is not the key's: the pair is skipped, the next ones read.
    if (paired) args[key] = glm_value(rest.substr(0, close), types_of(params, key, kUnnamed));
    if (close == std::string_view::npos) break;
    rest = rest.substr(close + kValueClose.size());
  }
  out.name = name;
  out.arguments = dump_arguments(args);
  return true;
}

}  // namespace nc::server
