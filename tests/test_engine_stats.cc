// EngineStats as data (nanocascade/stats.h): every field described once, the difference of two
// snapshots, the JSON that `bench --json` writes, and the Prometheus samples of /metrics.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>
#include <type_traits>

#include "nanocascade/stats.h"
#include "server/metrics.h"

namespace nc {
namespace {

// Counts an aggregate's direct members: the most initializers T{...} takes, each of a type that
// converts to anything (a nested struct counts as one member).
struct AnyValue {
  template <class T>
  operator T() const;
};

template <class T, class... A>
constexpr size_t member_count() {
  if constexpr (requires { T{A{}..., AnyValue{}}; }) {
    return member_count<T, A..., AnyValue>();
  } else {
    return sizeof...(A);
  }
}

template <class T>
constexpr bool is_number = std::is_arithmetic_v<std::remove_cvref_t<T>>;

size_t described_fields() {
  size_t n = 0;
  for_each_stat([&](const StatField&) { ++n; });
  return n;
}

// Every numeric field set to a distinct value: base + its position in the field list.
EngineStats numbered(int base) {
  EngineStats s;
  int i = 0;
  for_each_stat(
      [&](const StatField&, auto& v) {
        if constexpr (is_number<decltype(v)>) v = base + i;
        ++i;
      },
      s);
  s.cache.last_step_pages_per_level = {base, 1};
  return s;
}

TEST(EngineStats, EveryDeclaredFieldIsDescribed) {
  // EngineStats's members less its five structs (decode_steps, prefill_steps, cache, host,
  // streaming), plus theirs. A failure here: a field was declared without its line in the
  // visitors of stats.h.
  constexpr size_t kLeaves =
      member_count<EngineStats>() - 5 + 2 * member_count<EngineStats::StepKind>() +
      member_count<CacheStats>() + member_count<HostTierStats>() + member_count<StreamingStats>();
  static_assert(member_count<EngineStats::StepKind>() == 7);
  EXPECT_EQ(described_fields(), kLeaves);
}

TEST(EngineStats, KeysAreUniqueAndFamiliesStartWithHelp) {
  std::set<std::string> keys;
  std::set<std::string> families;
  const char* last_metric = nullptr;
  for_each_stat([&](const StatField& f) {
    const std::string key = std::string(f.group ? f.group : "") + "/" + f.key;
    EXPECT_TRUE(keys.insert(key).second) << "duplicate JSON key " << key;
    if (f.metric == nullptr) return;
    const bool starts_family = last_metric == nullptr || std::string(last_metric) != f.metric;
    if (starts_family) {
      EXPECT_TRUE(families.insert(f.metric).second) << f.metric << " is split in two runs";
      EXPECT_NE(f.help, nullptr) << f.metric << " starts a family without help";
    }
    last_metric = f.metric;
  });
  EXPECT_EQ(keys.size(), described_fields());
}

TEST(EngineStats, DeltaSubtractsCountersAndKeepsGauges) {
  EngineStats before, after;
  before.num_steps = 10;
  after.num_steps = 25;
  before.decode_steps.tokens = 100;
  after.decode_steps.tokens = 160;
  before.prefill_steps.wall_s = 1.5;
  after.prefill_steps.wall_s = 4.0;
  before.cache.kv_bytes_plain = 1000;
  after.cache.kv_bytes_plain = 5096;
  before.total_pages = after.total_pages = 64;
  before.used_pages = 3;
  after.used_pages = 7;
  before.cache.max_levels = 2;
  after.cache.max_levels = 3;
  before.cache.last_step_pages_per_level = {1};
  after.cache.last_step_pages_per_level = {4, 2};
  // Cumulative hit rate 50 / 200; over the run (30 of 100) it is 0.3.
  before.cache.lookup_tokens = 100;
  before.cache.hit_tokens = 20;
  after.cache.lookup_tokens = 200;
  after.cache.hit_tokens = 50;
  after.cache.hit_rate = 0.25;

  const EngineStats d = stats_delta(before, after);
  EXPECT_EQ(d.num_steps, 15);
  EXPECT_EQ(d.decode_steps.tokens, 60);
  EXPECT_DOUBLE_EQ(d.prefill_steps.wall_s, 2.5);
  EXPECT_DOUBLE_EQ(d.cache.kv_bytes_plain, 4096);
  EXPECT_EQ(d.total_pages, 64);
  EXPECT_EQ(d.used_pages, 7);
  EXPECT_EQ(d.cache.max_levels, 3);
  EXPECT_EQ(d.cache.last_step_pages_per_level, (std::vector<int>{4, 2}));
  EXPECT_EQ(d.cache.lookup_tokens, 100);
  EXPECT_EQ(d.cache.hit_tokens, 30);
  EXPECT_DOUBLE_EQ(d.cache.hit_rate, 0.3);
}

TEST(EngineStats, DeltaOfEveryField) {
  const EngineStats before = numbered(1000), after = numbered(5000);
  const EngineStats d = stats_delta(before, after);
  for_each_stat(
      [](const StatField& f, const auto& dv, const auto& bv, const auto& av) {
        if constexpr (is_number<decltype(dv)>) {
          if (f.kind == StatKind::Counter) {
            EXPECT_EQ(dv, av - bv) << f.key;
          } else if (f.kind == StatKind::Gauge) {
            EXPECT_EQ(dv, av) << f.key;
          }
        } else {
          EXPECT_EQ(f.kind, StatKind::Gauge) << f.key << ": only numbers can be counters";
          EXPECT_EQ(dv, av) << f.key;
        }
      },
      d, before, after);
  EXPECT_DOUBLE_EQ(d.cache.hit_rate, double(d.cache.hit_tokens) / double(d.cache.lookup_tokens));
}

TEST(EngineStats, JsonHasEveryFieldUnderItsKey) {
  const EngineStats s = numbered(7);
  const nlohmann::json j = s;
  size_t n = 0;
  for_each_stat(
      [&](const StatField& f, const auto& v) {
        const nlohmann::json& slot = f.group ? j.at(f.group).at(f.key) : j.at(f.key);
        EXPECT_EQ(slot, nlohmann::json(v)) << f.key;
        ++n;
      },
      s);
  EXPECT_EQ(n, described_fields());
  EXPECT_EQ(j.at("cache").at("last_step_pages_per_level"), nlohmann::json({7, 1}));
}

TEST(EngineStats, JsonKeepsTheKeysBenchHasAlwaysWritten) {
  EngineStats s;
  s.num_steps = 12;
  s.num_preemptions = 1;
  s.num_graph_steps = 9;
  s.num_kernel_compiles = 2;
  s.num_kernel_cache_hits = 5;
  s.num_device_sampled = 40;
  s.num_overlapped_steps = 11;
  s.total_pages = 2912;
  s.page_size = 16;
  s.weight_bytes = 540157184;
  s.model_s = 0.5;
  s.decode_steps.kv_tokens = 46926;
  s.prefill_steps.attn_pairs = 17670;
  s.cache.kv_bytes_cascade = 2177280000.0;
  s.cache.hit_rate = 0.25;
  const nlohmann::ordered_json j = s;
  EXPECT_EQ(j.at("steps"), 12);
  EXPECT_EQ(j.at("preemptions"), 1);
  EXPECT_EQ(j.at("graph_steps"), 9);
  EXPECT_EQ(j.at("kernel_compiles"), 2);
  EXPECT_EQ(j.at("kernel_cache_hits"), 5);
  EXPECT_EQ(j.at("device_sampled"), 40);
  EXPECT_EQ(j.at("overlapped_steps"), 11);
  EXPECT_EQ(j.at("kv_pages"), 2912);
  EXPECT_EQ(j.at("page_size"), 16);
  EXPECT_EQ(j.at("weight_bytes"), 540157184);
  EXPECT_DOUBLE_EQ(j.at("model_s").get<double>(), 0.5);
  EXPECT_EQ(j.at("decode").at("kv_tokens"), 46926);
  EXPECT_EQ(j.at("prefill").at("attn_pairs"), 17670);
  EXPECT_DOUBLE_EQ(j.at("cache").at("kv_bytes_cascade").get<double>(), 2177280000.0);
  EXPECT_DOUBLE_EQ(j.at("cache").at("hit_rate").get<double>(), 0.25);
  // The other keys bench/e2e_report.py, tools/ and earlier result files read.
  for (const char* key : {"schedule_s", "sample_s", "device_s", "workspace_bytes", "kv_cache_bytes",
                          "free_memory_bytes"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  for (const char* group : {"decode", "prefill"}) {
    for (const char* key :
         {"steps", "tokens", "kv_tokens", "attn_pairs", "device_s", "wall_s", "model_prep_s"}) {
      EXPECT_TRUE(j.at(group).contains(key)) << group << "." << key;
    }
  }
  for (const char* key : {"lookup_tokens", "hit_tokens", "hit_rate", "max_levels", "cascade_steps",
                          "kv_bytes_plain", "kv_bytes_cascade"}) {
    EXPECT_TRUE(j.at("cache").contains(key)) << "cache." << key;
  }
  EXPECT_EQ(j.begin().key(), "page_size");  // the fields' order
}

// The samples of the exposition: "name{labels}" -> value.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

TEST(EngineStats, PrometheusSamples) {
  EngineStats s;
  s.num_steps = 42;
  s.num_running = 3;
  s.free_pages = 90;
  s.used_pages = 6;
  s.cached_pages = 4;
  s.total_pages = 100;
  s.cache.shared_pages = 2;
  s.cache.hit_rate = 0.5;
  s.cache.kv_bytes_plain = 3456000;
  s.cache.kv_bytes_cascade = 1728000.5;
  s.cache.last_step_pages_per_level = {3, 5};
  std::string text;
  server::render_engine_metrics(s, text);
  const auto m = samples(text);
  EXPECT_EQ(m.at("nanocascade_engine_steps_total"), "42");
  EXPECT_EQ(m.at("nanocascade_requests_running"), "3");
  EXPECT_EQ(m.at(R"(nanocascade_kv_pages{state="free"})"), "90");
  EXPECT_EQ(m.at(R"(nanocascade_kv_pages{state="used"})"), "6");
  EXPECT_EQ(m.at(R"(nanocascade_kv_pages{state="cached"})"), "4");
  EXPECT_EQ(m.at(R"(nanocascade_kv_pages_sharing{state="shared"})"), "2");
  EXPECT_EQ(m.at("nanocascade_prefix_cache_hit_rate"), "0.5");
  EXPECT_EQ(m.at(R"(nanocascade_attention_kv_bytes_total{mode="plain"})"), "3456000");
  EXPECT_EQ(m.at(R"(nanocascade_attention_kv_bytes_total{mode="cascade"})"), "1728000.5");
  EXPECT_EQ(m.at("nanocascade_kv_cache_usage_ratio"), "0.06");
  EXPECT_EQ(m.at("nanocascade_cascade_last_step_levels"), "2");
  EXPECT_EQ(m.count("nanocascade_requests_waiting"), 0u);  // the server's, from its in-flight count
  EXPECT_NE(text.find("# HELP nanocascade_kv_pages KV cache pages by state.\n"
                      "# TYPE nanocascade_kv_pages gauge\n"
                      "nanocascade_kv_pages{state=\"free\"} 90\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE nanocascade_engine_steps_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE nanocascade_prefix_cache_hit_rate gauge\n"), std::string::npos);
  // One HELP and one TYPE per family.
  size_t helps = 0;
  for (size_t p = text.find("# HELP nanocascade_kv_pages "); p != std::string::npos;
       p = text.find("# HELP nanocascade_kv_pages ", p + 1)) {
    ++helps;
  }
  EXPECT_EQ(helps, 1u);
}

// The metrics /metrics has always exposed from EngineStats, every one present.
TEST(EngineStats, PrometheusNamesStay) {
  std::string text;
  server::render_engine_metrics(EngineStats{}, text);
  const auto m = samples(text);
  for (const char* name : {"nanocascade_generation_tokens_total",
                           "nanocascade_prompt_tokens_computed_total",
                           "nanocascade_preemptions_total",
                           "nanocascade_kv_pages_total",
                           "nanocascade_kv_page_size_tokens",
                           "nanocascade_kv_cache_bytes",
                           "nanocascade_kv_cache_bytes_per_token",
                           "nanocascade_weight_bytes",
                           R"(nanocascade_kv_pages_sharing{state="private"})",
                           R"(nanocascade_kv_pages_sharing{state="cached_only"})",
                           "nanocascade_prefix_tree_pages",
                           "nanocascade_prefix_cache_lookup_tokens_total",
                           "nanocascade_prefix_cache_hit_tokens_total",
                           "nanocascade_prefix_cache_evicted_pages_total",
                           "nanocascade_cascade_steps_total",
                           "nanocascade_cascade_max_levels",
                           "nanocascade_jit_compiles_total",
                           "nanocascade_jit_compile_seconds_total",
                           "nanocascade_jit_cache_hits_total",
                           "nanocascade_sparse_pages_read_total",
                           "nanocascade_sparse_pages_skipped_total",
                           R"(nanocascade_kv_page_transitions_total{kind="allocated"})",
                           R"(nanocascade_kv_page_transitions_total{kind="reloaded"})",
                           R"(nanocascade_kv_page_transitions_total{kind="restored"})",
                           R"(nanocascade_host_kv_pages{state="capacity"})",
                           R"(nanocascade_host_kv_pages{state="used"})",
                           "nanocascade_host_kv_hit_tokens_total",
                           R"(nanocascade_host_kv_page_moves_total{kind="offloaded"})",
                           R"(nanocascade_host_kv_page_moves_total{kind="reloaded"})",
                           R"(nanocascade_host_kv_page_moves_total{kind="dropped"})",
                           R"(nanocascade_host_kv_bytes_total{dir="to_host"})",
                           R"(nanocascade_host_kv_bytes_total{dir="to_device"})",
                           "nanocascade_request_kv_pages_peak",
                           "nanocascade_streaming_evictions_total",
                           "nanocascade_streaming_evicted_tokens_total"}) {
    EXPECT_EQ(m.count(name), 1u) << name;
  }
  EXPECT_EQ(m.size(), 49u) << text;
}

}  // namespace
}  // namespace nc
