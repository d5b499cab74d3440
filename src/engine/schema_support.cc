// check_schema_supported and check_structural_tag_schemas (engine/schema_support.h).
#include "engine/schema_support.h"

#include <array>
#include <cmath>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nc {
namespace {

using json = nlohmann::json;

// Keywords xgrammar's JSON-schema converter does not enforce (it compiles them away).
constexpr std::array<std::string_view, 17> kUnsupported = {"allOf",
                                                           "not",
                                                           "if",
                                                           "then",
                                                           "else",
                                                           "uniqueItems",
                                                           "contains",
                                                           "minContains",
                                                           "maxContains",
                                                           "multipleOf",
                                                           "dependencies",
                                                           "dependentRequired",
                                                           "dependentSchemas",
                                                           "patternProperties",
                                                           "propertyNames",
                                                           "unevaluatedProperties",
                                                           "unevaluatedItems"};

// Beyond this the schema is refused as too deep (the server's bound is lower: 64).
constexpr int kMaxDepth = 128;

// "json_schema: <what> at '<pointer>': <why>".
[[noreturn]] void refuse(const std::string& at, std::string_view what, std::string_view why) {
  fail_as(ErrorKind::InvalidArgument, "json_schema: {} at '{}': {}", what, at.empty() ? "/" : at,
          why);
}

// Whether `v` is an instance of JSON-schema type `type` ("integer": a number without fraction).
bool has_type(const json& v, const std::string& type) {
  if (type == "string") return v.is_string();
  if (type == "integer") {
    if (v.is_number_integer()) return true;
    const double x = v.is_number_float() ? v.get<double>() : 0.5;
    return std::isfinite(x) && std::floor(x) == x;
  }
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  return true;  // a type name the compiler judges
}

bool has_any_type(const json& v, const json& types) {
  if (types.is_string()) return has_type(v, types.get<std::string>());
  if (!types.is_array()) return true;
  for (const json& t : types)
    if (t.is_string() && has_type(v, t.get<std::string>())) return true;
  return false;
}

class SchemaChecker {
 public:
  explicit SchemaChecker(const json& root) : root_(root) {}

  void check(const json& s, const std::string& at, int depth) {
    if (!s.is_object()) return;
    if (depth > kMaxDepth)
      refuse(at, "a schema", fmt::format("nested deeper than {} schemas", kMaxDepth));
    for (std::string_view k : kUnsupported)
      if (s.contains(k))
        refuse(at, fmt::format("'{}'", k),
               "not supported by the grammar engine (its output would not be held to it)");
    check_strings(s, at);
    check_values_fit_type(s, at);
    check_required(s, at);
    for (const char* list : {"anyOf", "oneOf"})
      if (s.contains(list) && s[list].is_array() && s[list].empty())
        refuse(at, fmt::format("an empty '{}'", list), "no value can match");
    if (s.contains("type") && s["type"].is_array() && s["type"].empty())
      refuse(at, "an empty 'type' list", "no value can match");
    const int d = depth + 1;
    if (s.contains("properties")) check_values(s["properties"], at + "/properties", d);
    if (s.contains("$defs")) check_values(s["$defs"], at + "/$defs", d);
    if (s.contains("definitions")) check_values(s["definitions"], at + "/definitions", d);
    if (s.contains("items")) check(s["items"], at + "/items", d);
    if (s.contains("additionalProperties"))
      check(s["additionalProperties"], at + "/additionalProperties", d);
    if (s.contains("prefixItems")) check_each(s["prefixItems"], at + "/prefixItems", d);
    if (s.contains("anyOf")) check_each(s["anyOf"], at + "/anyOf", d);
    if (s.contains("oneOf")) check_each(s["oneOf"], at + "/oneOf", d);
    if (s.contains("$ref")) check_ref(s["$ref"], at, d);
  }

 private:
  void check_each(const json& list, const std::string& at, int depth) {
    if (!list.is_array()) return;
    for (size_t i = 0; i < list.size(); ++i) check(list[i], at + "/" + std::to_string(i), depth);
  }

  void check_values(const json& map, const std::string& at, int depth) {
    if (!map.is_object()) return;
    for (const auto& [key, value] : map.items()) check(value, at + "/" + key, depth);
  }

  // xgrammar matches a pattern against the characters between the quotes as written in JSON
  // (escapes and all), and drops length bounds beside a pattern or format.
  void check_strings(const json& s, const std::string& at) {
    // Beside a format the bounds go too, but pydantic's URL types and zod's .email().max() write
    // that everywhere: accepted, the bounds unenforced (docs/server.md); beside a pattern, refused.
    if ((s.contains("minLength") || s.contains("maxLength")) && s.contains("pattern"))
      refuse(at, "'minLength'/'maxLength' beside 'pattern'",
             "not supported by the grammar engine (it drops the bounds)");
    if (!s.contains("pattern") || !s["pattern"].is_string()) return;
    const std::string p = s["pattern"].get<std::string>();
    if (p.find('"') != std::string::npos || p.find("\\\\") != std::string::npos)
      refuse(at, "a 'pattern' with a quote or a backslash",
             "not supported by the grammar engine (it matches the JSON-escaped text, not the "
             "value)");
  }

  // A const or enum value outside the schema's own type cannot be produced validly.
  void check_values_fit_type(const json& s, const std::string& at) {
    if (!s.contains("type")) return;
    if (s.contains("const") && !has_any_type(s["const"], s["type"]))
      refuse(at, fmt::format("'const' {}", s["const"].dump()), "not of the schema's 'type'");
    if (!s.contains("enum") || !s["enum"].is_array()) return;
    for (const json& v : s["enum"])
      if (!has_any_type(v, s["type"]))
        refuse(at, fmt::format("'enum' value {}", v.dump()), "not of the schema's 'type'");
  }

  // Objects are strict (no properties beyond 'properties' unless additionalProperties says so):
  // a required name missing from 'properties' could never be written.
  void check_required(const json& s, const std::string& at) {
    if (!s.contains("required") || !s["required"].is_array()) return;
    const json* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (extra != nullptr && !(extra->is_boolean() && !extra->get<bool>())) return;
    const json* props = s.contains("properties") ? &s["properties"] : nullptr;
    for (const json& name : s["required"])
      if (name.is_string() &&
          (props == nullptr || !props->is_object() || !props->contains(name.get<std::string>())))
        refuse(at, fmt::format("required property {}", name.dump()),
               "not in 'properties' (objects take no other properties)");
  }

  // Only references into this schema; each target checked once (a schema may refer to itself).
  void check_ref(const json& ref, const std::string& at, int depth) {
    if (!ref.is_string()) return;
    const std::string r = ref.get<std::string>();
    if (r != "#" && r.rfind("#/", 0) != 0)
      refuse(at, fmt::format("'$ref' {}", ref.dump()),
             "not a reference into this schema ('#/...')");
    if (!visited_refs_.insert(r).second) return;
    json::json_pointer pointer;
    try {
      pointer = json::json_pointer(r.substr(1));
    } catch (const json::exception&) {
      refuse(at, fmt::format("'$ref' {}", ref.dump()), "not a valid JSON pointer");
    }
    if (!root_.contains(pointer))
      refuse(at, fmt::format("'$ref' {}", ref.dump()), "names nothing in this schema");
    check(root_.at(pointer), r.substr(1), depth);
  }

  const json& root_;
  std::set<std::string> visited_refs_;
};

// Every {"type": "json_schema", "json_schema": S} inside a structural tag (tool parameters).
void check_tag_schemas(const json& v, int depth) {
  if (depth > kMaxDepth) return;
  if (v.is_object()) {
    if (v.contains("type") && v["type"] == "json_schema" && v.contains("json_schema")) {
      const json& schema = v["json_schema"];
      SchemaChecker(schema).check(schema, "", 0);
    }
    for (const auto& [key, value] : v.items()) check_tag_schemas(value, depth + 1);
  } else if (v.is_array()) {
    for (const json& e : v) check_tag_schemas(e, depth + 1);
  }
}

}  // namespace

void check_schema_supported(const std::string& schema_text) {
  const json s = json::parse(schema_text, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) return;
  SchemaChecker(s).check(s, "", 0);
}

void check_structural_tag_schemas(const std::string& tag_text) {
  const json t = json::parse(tag_text, nullptr, /*allow_exceptions=*/false);
  if (!t.is_discarded()) check_tag_schemas(t, 0);
}

}  // namespace nc
