// check_schema_supported (engine/schema_support.h).
#include "engine/schema_support.h"

#include <array>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nc {
namespace {

using json = nlohmann::json;

// Keywords xgrammar's JSON-schema converter does not enforce (it compiles them away).
constexpr std::array<std::string_view, 16> kUnsupported = {"allOf",
                                                           "not",
                                                           "if",
                                                           "then",
                                                           "else",
                                                           "uniqueItems",
                                                           "contains",
                                                           "minContains",
                                                           "maxContains",
                                                           "multipleOf",
                                                           "dependentRequired",
                                                           "dependentSchemas",
                                                           "patternProperties",
                                                           "propertyNames",
                                                           "unevaluatedProperties",
                                                           "unevaluatedItems"};

// Beyond this the schema is refused as too deep (the server's bound is lower: 64).
constexpr int kMaxDepth = 128;

void check(const json& s, const std::string& at, int depth);

void check_each(const json& list, const std::string& at, int depth) {
  if (!list.is_array()) return;
  for (size_t i = 0; i < list.size(); ++i) check(list[i], at + "/" + std::to_string(i), depth);
}

void check_values(const json& map, const std::string& at, int depth) {
  if (!map.is_object()) return;
  for (const auto& [key, value] : map.items()) check(value, at + "/" + key, depth);
}

void check(const json& s, const std::string& at, int depth) {
  if (!s.is_object()) return;
  NC_CHECK_AS(ErrorKind::InvalidArgument, depth <= kMaxDepth,
              "json_schema: nested deeper than {} schemas at '{}'", kMaxDepth, at);
  for (std::string_view k : kUnsupported)
    NC_CHECK_AS(ErrorKind::InvalidArgument, !s.contains(k),
                "json_schema: '{}' at '{}' is not supported by the grammar engine (its output "
                "would not be held to it)",
                k, at.empty() ? "/" : at);
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
}

}  // namespace

void check_schema_supported(const std::string& schema_text) {
  const json s = json::parse(schema_text, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) return;
  check(s, "", 0);
}

}  // namespace nc
