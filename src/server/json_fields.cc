#include "server/json_fields.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace nc::server {

using json = nlohmann::json;

ApiError wrong_type(const std::string& param, const char* expected, const json& v) {
  return invalid_param(param,
                       fmt::format("'{}' must be {}, got {}", param, expected, v.type_name()));
}

std::optional<double> get_number(const json& obj, const char* key, double lo, double hi,
                                 bool lo_open) {
  const json* v = present_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  const bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi;
  if (!ok) {
    throw invalid_param(key, fmt::format("'{}' must be in {}{}, {}], got {}", key,
                                         lo_open ? "(" : "[", lo, hi, v->dump()));
  }
  return x;
}

std::optional<int64_t> get_int(const json& obj, const char* key, int64_t lo, int64_t hi) {
  const json* v = present_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) throw wrong_type(key, "an integer", *v);
  bool ok = false;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    ok = u <= uint64_t(std::numeric_limits<int64_t>::max());
    x = ok ? int64_t(u) : 0;
  } else {
    x = v->get<int64_t>();
    ok = true;
  }
  if (!ok || x < lo || x > hi) {
    throw invalid_param(
        key, fmt::format("'{}' must be an integer in [{}, {}], got {}", key, lo, hi, v->dump()));
  }
  return x;
}

std::optional<bool> get_bool(const json& obj, const char* key) {
  const json* v = present_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, const char* key) {
  const json* v = present_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

ApiError field_error(const std::string& param, const std::string& problem) {
  return invalid_param(param, fmt::format("'{}' {}", param, problem));
}

ApiError unsupported(const std::string& param, const std::string& what) {
  return invalid_param(param, what + " is not supported by this server", "unsupported_parameter");
}

json parse_json(std::string_view body) {
  // The callback bounds the nesting depth before the parser builds anything deep.
  const json::parser_callback_t depth_guard = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) {
      throw invalid_param("", fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
    }
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), depth_guard, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for numbers beyond a double (1e400).
    throw invalid_param("", fmt::format("the body is not valid JSON: {}", e.what()),
                        "invalid_json");
  }
}

nlohmann::ordered_json parse_bounded(std::string_view text) {
  struct TooDeep {};
  const nlohmann::ordered_json::parser_callback_t guard =
      [](int depth, nlohmann::ordered_json::parse_event_t, nlohmann::ordered_json&) {
        if (depth > kMaxJsonDepth) throw TooDeep{};
        return true;
      };
  try {
    return nlohmann::ordered_json::parse(text.begin(), text.end(), guard,
                                         /*allow_exceptions=*/false);
  } catch (const TooDeep&) {
    return nlohmann::ordered_json(nlohmann::ordered_json::value_t::discarded);
  }
}

json parse_json_object(std::string_view body) {
  json j = parse_json(body);
  if (!j.is_object()) throw invalid_param("", "the body must be a JSON object");
  return j;
}

nlohmann::ordered_json parse_ordered_object(std::string_view body) {
  (void)parse_json_object(body);  // the checks (depth, validity, an object)
  return nlohmann::ordered_json::parse(body.begin(), body.end());
}

}  // namespace nc::server
