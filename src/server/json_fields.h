// Reading an OpenAI request body's fields: present_field (absent and null are both "not given",
// as OpenAI treats them), typed getters that check the type and range and throw an ApiError
// naming the field, the value and what was expected, and the body's JSON parse with a bound on
// its nesting depth. Used by the request parser and the tool and structured-output readers.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace nc::server {

// The field's value, or nullptr when it is absent or null. For json and ordered_json alike.
template <class Json>
const Json* present_field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// "'<param>' must be <expected>, got <v's type>".
ApiError wrong_type(const std::string& param, const char* expected, const nlohmann::json& v);
// "<what> is not supported by this server" (code unsupported_parameter).
ApiError unsupported(const std::string& param, const std::string& what);
// "'<param>' <problem>": the one form of a bad field's message in every request reader.
ApiError field_error(const std::string& param, const std::string& problem);

// The string at obj[key]; an ApiError naming "<at>.<key>" when it is absent, null or not a
// string, or empty where `non_empty`.
template <class Json>
const std::string& required_string(const Json& obj, const char* key, const std::string& at,
                                   bool non_empty = false) {
  const Json* v = present_field(obj, key);
  if (!v || !v->is_string() || (non_empty && v->template get_ref<const std::string&>().empty()))
    throw field_error(at + "." + key, non_empty ? "is required and must be a non-empty string"
                                                : "is required and must be a string");
  return v->template get_ref<const std::string&>();
}

// Each: nullopt when the field is not given; an ApiError when it has the wrong type or range.
// A number in [lo, hi] (lo excluded when lo_open).
std::optional<double> get_number(const nlohmann::json& obj, const char* key, double lo, double hi,
                                 bool lo_open = false);
// An integer in [lo, hi]. Non-integral numbers (2.5, 1e30) are rejected.
std::optional<int64_t> get_int(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi);
std::optional<bool> get_bool(const nlohmann::json& obj, const char* key);
std::optional<std::string> get_string(const nlohmann::json& obj, const char* key);

// The body as JSON; an ApiError (invalid_json) when it is not JSON or nests deeper than
// kMaxJsonDepth levels (which bounds the parser's work on hostile input).
inline constexpr int kMaxJsonDepth = 64;
nlohmann::json parse_json(std::string_view body);
// Text from inside a request or a model's output (a schema or arguments given as a string)
// parsed, or a discarded value (is_discarded()) when it is not JSON or nests deeper than
// kMaxJsonDepth: what the body's bound guards against (a recursive dump, a deep destructor)
// must not come back through a string.
nlohmann::ordered_json parse_bounded(std::string_view text);

// parse_json, then an ApiError unless the body is a JSON object.
nlohmann::json parse_json_object(std::string_view body);
// The same object with its keys in the body's order (for what a template or grammar writes in
// the client's order: tool schemas, response formats).
nlohmann::ordered_json parse_ordered_object(std::string_view body);

}  // namespace nc::server
