// stats_delta and to_json over the field list of nanocascade/stats.h.
#include <nlohmann/json.hpp>

#include <type_traits>

#include "nanocascade/stats.h"

namespace nc {

namespace {

template <class T>
constexpr bool is_number = std::is_arithmetic_v<std::remove_cvref_t<T>>;

// Where a field goes in the JSON: its group's object (made on first use), else the top.
template <class Json>
Json& field_slot(Json& j, const StatField& f) {
  return f.group ? j[f.group][f.key] : j[f.key];
}

template <class Json>
void stats_to_json(Json& j, const EngineStats& s) {
  j = Json::object();
  for_each_stat([&](const StatField& f, const auto& v) { field_slot(j, f) = v; }, s);
}

}  // namespace

void compute_stat_ratios(EngineStats& s) {
  CacheStats& c = s.cache;
  c.hit_rate = c.lookup_tokens ? double(c.hit_tokens) / double(c.lookup_tokens) : 0.0;
}

EngineStats stats_delta(const EngineStats& before, const EngineStats& after) {
  EngineStats d;
  for_each_stat(
      [](const StatField& f, auto& out, const auto& b, const auto& a) {
        if constexpr (is_number<decltype(out)>) {
          out = f.kind == StatKind::Counter ? a - b : a;
        } else {
          out = a;  // a level that is not a number (last_step_pages_per_level): a gauge
        }
      },
      d, before, after);
  compute_stat_ratios(d);
  return d;
}

void to_json(nlohmann::json& j, const EngineStats& s) {
  stats_to_json(j, s);
}

void to_json(nlohmann::ordered_json& j, const EngineStats& s) {
  stats_to_json(j, s);
}

}  // namespace nc
