// The engine's statistics (Engine::stats()) and one description of their fields.
//
// EngineStats is a snapshot: counters that only grow from the engine's start (steps, tokens,
// seconds spent) and gauges that give a level now (pages by state, memory sizes). for_each_stat
// below names every field once: its JSON key, whether it is a counter, a gauge or a ratio, and,
// where the server exports it, its Prometheus name, help and label. What works on all fields
// comes from that one list: the difference of two snapshots (stats_delta: what a measured run
// did), the JSON form (to_json: `bench --json`) and the server's /metrics exposition.
//
// Adding a field: declare it in its struct, then add its line to the struct's visitor below (a
// ratio also gets its formula in compute_stat_ratios). tests/test_engine_stats.cc fails while a
// declared field has no line.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace nc {

// Prefix cache and cascade accounting (docs/cascade.md).
struct CacheStats {
  // Pages by state now: free, used by one request, used by several (shared prefixes), and
  // cached only (no request uses them; evictable).
  int free_pages = 0;
  int private_pages = 0;
  int shared_pages = 0;
  int cached_only_pages = 0;
  int tree_pages = 0;  // pages the prefix tree holds (shared, cached-only or in use by one)
  // Prefix cache: tokens looked up at admission and tokens found (their K/V reused).
  int64_t lookup_tokens = 0;
  int64_t hit_tokens = 0;
  double hit_rate = 0;  // hit_tokens / lookup_tokens
  int64_t evicted_pages = 0;
  // Page state transitions since the engine started (docs/memory.md): free -> used
  // (allocated), used -> free (freed), used -> cached, cached -> free (evicted), cached -> used
  // (reloaded: a prefix hit on a page no request held).
  int64_t pages_allocated = 0;
  int64_t pages_freed = 0;
  int64_t pages_cached = 0;
  int64_t pages_evicted = 0;
  int64_t pages_reloaded = 0;
  int64_t pages_restored = 0;  // free -> cached: K/V copied back from the host tier
  // Cascade: the last step's levels (page entries per level, last = the requests' own) and
  // the KV bytes attention reads, plain paged vs cascade; totals over all steps.
  std::vector<int> last_step_pages_per_level;
  double last_step_kv_bytes_plain = 0;
  double last_step_kv_bytes_cascade = 0;
  double kv_bytes_plain = 0;
  double kv_bytes_cascade = 0;
  int64_t cascade_steps = 0;  // steps that ran with more than one level
  int max_levels = 0;         // most levels of any step
};

// The prefix cache's host-memory tier (EngineConfig::host_kv_cache; docs/memory.md); zeros when
// off. Pages are host pages of the device page's size.
struct HostTierStats {
  int capacity_pages = 0;
  int used_pages = 0;           // holding the K/V of a host-resident prefix-tree page
  int64_t hit_tokens = 0;       // prefix-hit tokens whose pages were copied back (reloaded)
  int64_t declined_tokens = 0;  // host hits recomputed instead (the reload rule said no)
  int64_t offloaded_pages = 0;  // device -> host
  int64_t reloaded_pages = 0;   // host -> device
  int64_t dropped_pages = 0;    // host pages discarded (LRU, the tier full)
  int64_t bytes_to_host = 0;
  int64_t bytes_to_device = 0;
};

// The streaming window (EngineConfig::streaming_window; docs/long_context.md): its settings, the
// page bound it keeps a decoding request under, and what it dropped and moved. peak_request_pages
// is kept with or without a window: with one, it stays at most page_bound plus one prefill
// chunk's pages however long the stream runs ("memory stays flat").
struct StreamingStats {
  int window_tokens = 0;  // 0: off
  int sink_pages = 0;
  int page_bound = 0;          // sinks + window pages + 1: the most a decoding request holds
  int peak_request_pages = 0;  // the most pages one request held at once since the start
  int64_t evictions = 0;       // times a request's window moved
  int64_t evicted_tokens = 0;  // tokens dropped from requests' caches
  int64_t evicted_pages = 0;
  int64_t shifted_pages = 0;  // kept pages whose keys were re-rotated (in every layer)
};

struct EngineStats {
  int page_size = 0;
  int total_pages = 0;
  int free_pages = 0;
  int used_pages = 0;
  int cached_pages = 0;
  int64_t kv_cache_bytes = 0;
  std::string kv_cache_dtype;      // the pages' element type: f32, bf16 or fp8_e4m3
  int64_t kv_bytes_per_token = 0;  // one token's K and V over all layers, in that dtype
  // Device memory the model took besides the KV cache: weights (with the rope table) and the
  // activation workspace (allocated up front for max_num_batched_tokens).
  int64_t weight_bytes = 0;
  std::string weight_dtype;  // the linear layers': bf16, f32, fp8_e4m3, a GGML block type
  int64_t workspace_bytes = 0;
  int64_t free_memory_bytes = 0;  // free device memory when the KV cache was sized
  int max_model_len = 0;
  int num_running = 0;
  int num_waiting = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  int64_t num_prompt_tokens_computed = 0;  // prefill tokens run through the model (recomputes too)
  int64_t num_generated_tokens = 0;
  // Wall-clock seconds spent, summed over steps.
  double schedule_s = 0;  // scheduling + building the step plan (engine CPU time)
  double model_s = 0;     // model forward
  double sample_s = 0;    // sampling, stop checks, detokenization
  // Device time of the forward passes (first kernel to logits), where the backend measures it
  // (CUDA); wall time minus this is time the GPU sat idle.
  double device_s = 0;
  int64_t num_graph_steps = 0;  // steps that ran as a CUDA graph
  // Sparse decode attention (EngineConfig::sparse_budget): pages of the sparsely read entries
  // that their selection kept and skipped, summed over steps, sparse layers and entries.
  int64_t num_sparse_pages_read = 0;
  int64_t num_sparse_pages_skipped = 0;
  // Attention kernels compiled at run time (the CUDA backend's JIT, docs/gpu.md): objects
  // compiled, seconds in the compiler, objects loaded from the on-disk cache.
  int64_t num_kernel_compiles = 0;
  double kernel_compile_s = 0;
  int64_t num_kernel_cache_hits = 0;
  // Steps by kind, decode-only vs. with prefill tokens: how many, their tokens, the KV tokens
  // their attention read (sum of the entries' context lengths), the causal (query, key) pairs,
  // device time (where measured) and wall time (schedule to sampled tokens).
  struct StepKind {
    int64_t steps = 0;
    int64_t tokens = 0;
    int64_t kv_tokens = 0;
    int64_t attn_pairs = 0;  // (query, key) pairs attention computed, causal
    double device_s = 0;
    double wall_s = 0;
    double model_prep_s = 0;  // host time in the model before its device work (plan, copies;
                              // a copy may wait on the previous step still running)
  };
  StepKind decode_steps, prefill_steps;
  int64_t num_device_sampled = 0;  // tokens sampled on the device
  // Steps queued while the previous step's tokens were still on their way (async scheduling).
  int64_t num_overlapped_steps = 0;
  CacheStats cache;
  HostTierStats host;
  StreamingStats streaming;
};

// Counter: only grows; a difference is after - before. Gauge: a level now; a difference keeps
// `after`. Ratio: computed from counters (cache.hit_rate); a difference computes it again from
// the counters' differences.
enum class StatKind : uint8_t { Counter, Gauge, Ratio };

// One field's description. A Prometheus family of several labelled samples (kv_pages by state)
// is consecutive fields of one metric name, the first of them with the help.
struct StatField {
  const char* group = nullptr;  // the JSON object it sits in ("cache", "decode"); null: top
  const char* key = nullptr;    // its JSON key in that object
  StatKind kind = StatKind::Gauge;
  const char* metric = nullptr;  // Prometheus name; null: not exported
  const char* help = nullptr;    // Prometheus help (first sample of a family)
  const char* label = nullptr;   // Prometheus label of this sample, e.g. state="free"; or null
};

// Makes the StatFields of one JSON group.
struct StatGroup {
  const char* name = nullptr;
  constexpr StatField counter(const char* key, const char* metric = nullptr,
                              const char* help = nullptr, const char* label = nullptr) const {
    return {name, key, StatKind::Counter, metric, help, label};
  }
  constexpr StatField gauge(const char* key, const char* metric = nullptr,
                            const char* help = nullptr, const char* label = nullptr) const {
    return {name, key, StatKind::Gauge, metric, help, label};
  }
  constexpr StatField ratio(const char* key, const char* metric = nullptr,
                            const char* help = nullptr) const {
    return {name, key, StatKind::Ratio, metric, help, nullptr};
  }
};

// visit(field, k.x...) for each field x of EngineStats::StepKind, in JSON group `group`. The
// structs `k...` (none, one or several, const or not) are walked side by side, as in the
// visitors below: stats_delta walks (out, before, after), to_json one struct.
template <class Visit, class... Kind>
void for_each_step_kind_stat(const char* group, Visit&& visit, Kind&... k) {
  const StatGroup g{group};
  visit(g.counter("steps"), k.steps...);
  visit(g.counter("tokens"), k.tokens...);
  visit(g.counter("kv_tokens"), k.kv_tokens...);
  visit(g.counter("attn_pairs"), k.attn_pairs...);
  visit(g.counter("device_s"), k.device_s...);
  visit(g.counter("wall_s"), k.wall_s...);
  visit(g.counter("model_prep_s"), k.model_prep_s...);
}

// visit(field, c.x...) for each field x of CacheStats (JSON group "cache").
template <class Visit, class... Cache>
void for_each_cache_stat(Visit&& visit, Cache&... c) {
  const StatGroup g{"cache"};
  visit(g.gauge("free_pages"), c.free_pages...);
  visit(g.gauge("private_pages", "nanocascade_kv_pages_sharing",
                "KV pages by how many requests use them.", R"(state="private")"),
        c.private_pages...);
  visit(g.gauge("shared_pages", "nanocascade_kv_pages_sharing", nullptr, R"(state="shared")"),
        c.shared_pages...);
  visit(g.gauge("cached_only_pages", "nanocascade_kv_pages_sharing", nullptr,
                R"(state="cached_only")"),
        c.cached_only_pages...);
  visit(g.gauge("tree_pages", "nanocascade_prefix_tree_pages", "KV pages the prefix tree holds."),
        c.tree_pages...);
  visit(g.counter("lookup_tokens", "nanocascade_prefix_cache_lookup_tokens_total",
                  "Prompt tokens looked up in the prefix cache."),
        c.lookup_tokens...);
  visit(g.counter("hit_tokens", "nanocascade_prefix_cache_hit_tokens_total",
                  "Prompt tokens found in the prefix cache (K/V reused)."),
        c.hit_tokens...);
  visit(
      g.ratio("hit_rate", "nanocascade_prefix_cache_hit_rate", "Hit tokens over looked-up tokens."),
      c.hit_rate...);
  visit(g.counter("evicted_pages", "nanocascade_prefix_cache_evicted_pages_total",
                  "Cached pages evicted."),
        c.evicted_pages...);
  visit(g.counter("pages_allocated", "nanocascade_kv_page_transitions_total",
                  "KV page state transitions (docs/memory.md).", R"(kind="allocated")"),
        c.pages_allocated...);
  visit(
      g.counter("pages_freed", "nanocascade_kv_page_transitions_total", nullptr, R"(kind="freed")"),
      c.pages_freed...);
  visit(g.counter("pages_cached", "nanocascade_kv_page_transitions_total", nullptr,
                  R"(kind="cached")"),
        c.pages_cached...);
  visit(g.counter("pages_evicted", "nanocascade_kv_page_transitions_total", nullptr,
                  R"(kind="evicted")"),
        c.pages_evicted...);
  visit(g.counter("pages_reloaded", "nanocascade_kv_page_transitions_total", nullptr,
                  R"(kind="reloaded")"),
        c.pages_reloaded...);
  visit(g.counter("pages_restored", "nanocascade_kv_page_transitions_total", nullptr,
                  R"(kind="restored")"),
        c.pages_restored...);
  visit(g.gauge("last_step_pages_per_level"), c.last_step_pages_per_level...);
  visit(g.gauge("last_step_kv_bytes_plain"), c.last_step_kv_bytes_plain...);
  visit(g.gauge("last_step_kv_bytes_cascade"), c.last_step_kv_bytes_cascade...);
  visit(g.counter("kv_bytes_plain", "nanocascade_attention_kv_bytes_total",
                  "KV bytes attention read, plain paged vs cascade.", R"(mode="plain")"),
        c.kv_bytes_plain...);
  visit(g.counter("kv_bytes_cascade", "nanocascade_attention_kv_bytes_total", nullptr,
                  R"(mode="cascade")"),
        c.kv_bytes_cascade...);
  visit(g.counter("cascade_steps", "nanocascade_cascade_steps_total",
                  "Steps that ran with more than one level."),
        c.cascade_steps...);
  visit(
      g.gauge("max_levels", "nanocascade_cascade_max_levels", "Most attention levels of any step."),
      c.max_levels...);
}

// visit(field, h.x...) for each field x of HostTierStats (JSON group "host").
template <class Visit, class... Host>
void for_each_host_stat(Visit&& visit, Host&... h) {
  const StatGroup g{"host"};
  visit(g.gauge("capacity_pages", "nanocascade_host_kv_pages",
                "Host-tier KV pages: capacity and used.", R"(state="capacity")"),
        h.capacity_pages...);
  visit(g.gauge("used_pages", "nanocascade_host_kv_pages", nullptr, R"(state="used")"),
        h.used_pages...);
  visit(g.counter("hit_tokens", "nanocascade_host_kv_hit_tokens_total",
                  "Prefix-hit tokens reloaded from the host tier."),
        h.hit_tokens...);
  visit(g.counter("declined_tokens"), h.declined_tokens...);
  visit(g.counter("offloaded_pages", "nanocascade_host_kv_page_moves_total",
                  "Pages moved between the device and the host tier.", R"(kind="offloaded")"),
        h.offloaded_pages...);
  visit(g.counter("reloaded_pages", "nanocascade_host_kv_page_moves_total", nullptr,
                  R"(kind="reloaded")"),
        h.reloaded_pages...);
  visit(g.counter("dropped_pages", "nanocascade_host_kv_page_moves_total", nullptr,
                  R"(kind="dropped")"),
        h.dropped_pages...);
  visit(g.counter("bytes_to_host", "nanocascade_host_kv_bytes_total",
                  "Bytes copied between the device and the host tier.", R"(dir="to_host")"),
        h.bytes_to_host...);
  visit(g.counter("bytes_to_device", "nanocascade_host_kv_bytes_total", nullptr,
                  R"(dir="to_device")"),
        h.bytes_to_device...);
}

// visit(field, w.x...) for each field x of StreamingStats (JSON group "streaming").
template <class Visit, class... Streaming>
void for_each_streaming_stat(Visit&& visit, Streaming&... w) {
  const StatGroup g{"streaming"};
  visit(g.gauge("window_tokens"), w.window_tokens...);
  visit(g.gauge("sink_pages"), w.sink_pages...);
  visit(g.gauge("page_bound"), w.page_bound...);
  visit(g.gauge("peak_request_pages", "nanocascade_request_kv_pages_peak",
                "The most KV pages one request held at once."),
        w.peak_request_pages...);
  visit(g.counter("evictions", "nanocascade_streaming_evictions_total",
                  "Times a request's streaming window moved."),
        w.evictions...);
  visit(g.counter("evicted_tokens", "nanocascade_streaming_evicted_tokens_total",
                  "Tokens the streaming window dropped from requests' KV caches."),
        w.evicted_tokens...);
  visit(g.counter("evicted_pages"), w.evicted_pages...);
  visit(g.counter("shifted_pages"), w.shifted_pages...);
}

// visit(field, s.x...) for each field x of EngineStats, nested structs included (their fields
// in their JSON groups). The JSON keys are those `bench --json` has always written (bench/ and
// tools/ read them): "steps" for num_steps, "kv_pages" for total_pages, and so on.
template <class Visit, class... Stats>
void for_each_stat(Visit&& visit, Stats&... s) {
  const StatGroup g{};
  visit(g.gauge("page_size", "nanocascade_kv_page_size_tokens", "Tokens per KV page."),
        s.page_size...);
  visit(g.gauge("kv_pages", "nanocascade_kv_pages_total", "KV cache pages in all."),
        s.total_pages...);
  visit(
      g.gauge("free_pages", "nanocascade_kv_pages", "KV cache pages by state.", R"(state="free")"),
      s.free_pages...);
  visit(g.gauge("used_pages", "nanocascade_kv_pages", nullptr, R"(state="used")"), s.used_pages...);
  visit(g.gauge("cached_pages", "nanocascade_kv_pages", nullptr, R"(state="cached")"),
        s.cached_pages...);
  visit(g.gauge("kv_cache_bytes", "nanocascade_kv_cache_bytes", "Bytes of the KV cache."),
        s.kv_cache_bytes...);
  visit(g.gauge("kv_cache_dtype"), s.kv_cache_dtype...);  // a label of nanocascade_kv_cache_info
  visit(g.gauge("kv_bytes_per_token", "nanocascade_kv_cache_bytes_per_token",
                "Bytes of one token's K and V over all layers, in the cache's dtype."),
        s.kv_bytes_per_token...);
  visit(g.gauge("weight_bytes", "nanocascade_weight_bytes",
                "Bytes of the model's weights on the device, as stored (with the rope table)."),
        s.weight_bytes...);
  visit(g.gauge("weight_dtype"), s.weight_dtype...);  // a label of nanocascade_weights_info
  visit(g.gauge("workspace_bytes"), s.workspace_bytes...);
  visit(g.gauge("free_memory_bytes"), s.free_memory_bytes...);
  visit(g.gauge("max_model_len"), s.max_model_len...);
  visit(g.gauge("running", "nanocascade_requests_running", "Requests the engine is running."),
        s.num_running...);
  visit(g.gauge("waiting"), s.num_waiting...);
  visit(g.counter("preemptions", "nanocascade_preemptions_total",
                  "Requests preempted for lack of KV pages."),
        s.num_preemptions...);
  visit(g.counter("steps", "nanocascade_engine_steps_total", "Engine steps run."), s.num_steps...);
  visit(g.counter("prompt_tokens_computed", "nanocascade_prompt_tokens_computed_total",
                  "Prompt tokens run through the model (prefill, recomputation included)."),
        s.num_prompt_tokens_computed...);
  visit(g.counter("generated_tokens", "nanocascade_generation_tokens_total",
                  "Tokens generated by the engine."),
        s.num_generated_tokens...);
  visit(g.counter("schedule_s"), s.schedule_s...);
  visit(g.counter("model_s"), s.model_s...);
  visit(g.counter("sample_s"), s.sample_s...);
  visit(g.counter("device_s"), s.device_s...);
  visit(g.counter("graph_steps"), s.num_graph_steps...);
  visit(g.counter("sparse_pages_read", "nanocascade_sparse_pages_read_total",
                  "KV pages sparse decode attention read (per layer and request)."),
        s.num_sparse_pages_read...);
  visit(g.counter("sparse_pages_skipped", "nanocascade_sparse_pages_skipped_total",
                  "KV pages sparse decode attention skipped (per layer and request)."),
        s.num_sparse_pages_skipped...);
  visit(g.counter("kernel_compiles", "nanocascade_jit_compiles_total",
                  "Attention kernels compiled at run time."),
        s.num_kernel_compiles...);
  visit(g.counter("kernel_compile_s", "nanocascade_jit_compile_seconds_total",
                  "Seconds spent compiling attention kernels at run time."),
        s.kernel_compile_s...);
  visit(g.counter("kernel_cache_hits", "nanocascade_jit_cache_hits_total",
                  "Attention kernels loaded from the on-disk JIT cache."),
        s.num_kernel_cache_hits...);
  for_each_step_kind_stat("decode", visit, s.decode_steps...);
  for_each_step_kind_stat("prefill", visit, s.prefill_steps...);
  visit(g.counter("device_sampled"), s.num_device_sampled...);
  visit(g.counter("overlapped_steps"), s.num_overlapped_steps...);
  for_each_cache_stat(visit, s.cache...);
  for_each_host_stat(visit, s.host...);
  for_each_streaming_stat(visit, s.streaming...);
}

// What happened between two snapshots of one engine: counters after - before, gauges as
// after, ratios from the counters' differences (hit_rate = hit_tokens / lookup_tokens).
EngineStats stats_delta(const EngineStats& before, const EngineStats& after);

// Sets the ratio fields from the counters they divide (0 where the divisor is 0).
void compute_stat_ratios(EngineStats& s);

// nlohmann's serializer hook (`nlohmann::json j = stats;`): an object with every field under its
// key, nested groups as objects ({"steps": .., "decode": {"steps": ..}, "cache": {..}}). JSON
// objects, not strings, so that callers add their own keys (bench adds the run's); the ordered
// flavour keeps the fields' order. Only json_fwd.hpp comes with this header.
void to_json(nlohmann::json& j, const EngineStats& s);
void to_json(nlohmann::ordered_json& j, const EngineStats& s);

}  // namespace nc
