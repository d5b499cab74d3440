#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace nc::server {

namespace {

void gauge(std::string& out, const std::string& name, const std::string& help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
}

void counter(std::string& out, const std::string& name, const std::string& help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
}

std::string le(double b) {
  return fmt::format("{}", b);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out,
                       const std::string& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  const std::string pre = labels.empty() ? "" : labels + ",";
  const std::string own = labels.empty() ? "" : "{" + labels + "}";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, pre, le(bounds_[i]), cum);
  }
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, pre, count_);
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, own, sum_, name, own, count_);
}

ServerMetrics::ServerMetrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
             1.0, 2.5}),
      e2e_({0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0,
            120.0}) {}

void ServerMetrics::on_request_finished(int prompt_tokens, int completion_tokens, double ttft_s,
                                        double tpot_s, double e2e_s, FinishReason reason) {
  (void)prompt_tokens;
  {
    std::lock_guard<std::mutex> lock(mu_);
    completion_tokens_ += completion_tokens;
    ++finished_by_reason_[finish_reason_name(reason)];
  }
  if (completion_tokens >= 1) ttft_.observe(ttft_s);
  if (completion_tokens >= 2) tpot_.observe(tpot_s);
  e2e_.observe(e2e_s);
}

void ServerMetrics::on_http_response(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_by_status_[status];
}

void ServerMetrics::on_prompt_tokens(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += n;
}

std::string ServerMetrics::render(const EngineStats& s) const {
  std::string out;
  // Sequences, as requests_running counts them (a request with n choices is n of each).
  gauge(out, "nanocascade_requests_waiting",
        "Sequences waiting for the engine to admit them (n per request of n choices).",
        s.num_waiting);
  {
    std::lock_guard<std::mutex> lock(mu_);
    counter(out, "nanocascade_prompt_tokens_total", "Prompt tokens of accepted requests.",
            double(prompt_tokens_));
    counter(out, "nanocascade_completion_tokens_total", "Tokens returned by finished requests.",
            double(completion_tokens_));
    out +=
        "# HELP nanocascade_requests_finished_total Finished requests by finish reason.\n"
        "# TYPE nanocascade_requests_finished_total counter\n";
    for (const auto& [reason, n] : finished_by_reason_) {
      out += fmt::format("nanocascade_requests_finished_total{{finish_reason=\"{}\"}} {}\n", reason,
                         n);
    }
    out +=
        "# HELP nanocascade_http_responses_total HTTP responses by status code.\n"
        "# TYPE nanocascade_http_responses_total counter\n";
    for (const auto& [status, n] : http_by_status_) {
      out += fmt::format("nanocascade_http_responses_total{{code=\"{}\"}} {}\n", status, n);
    }
  }
  ttft_.render("nanocascade_time_to_first_token_seconds",
               "Time from arrival to the first output token.", out);
  tpot_.render("nanocascade_time_per_output_token_seconds",
               "Mean gap between output tokens after the first, per request.", out);
  e2e_.render("nanocascade_e2e_request_latency_seconds", "Time from arrival to the last token.",
              out);
  render_engine_metrics(s, out);
  render_vllm(s, out);
  return out;
}

// The names vLLM exports (its metrics page), from the same numbers: prefix-cache counts are
// tokens; time per output token is each request's mean gap after its first token.
void ServerMetrics::render_vllm(const EngineStats& s, std::string& out) const {
  std::string name = model_name_;
  for (char& c : name)
    if (c == '"' || c == '\\' || c == '\n') c = '_';
  const std::string labels = fmt::format("model_name=\"{}\"", name);
  auto sample = [&](const char* metric, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", metric, help, metric, type,
                       metric, labels, v);
  };
  const double usage = s.total_pages > 0 ? double(s.used_pages) / s.total_pages : 0.0;
  sample("vllm:num_requests_running", "gauge", "Requests running on the engine.", s.num_running);
  sample("vllm:num_requests_waiting", "gauge", "Requests waiting to be admitted.", s.num_waiting);
  sample("vllm:gpu_cache_usage_perc", "gauge", "KV-cache usage (1 = full).", usage);
  sample("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage (1 = full).", usage);
  sample("vllm:prefix_cache_queries_total", "counter",
         "Prompt tokens looked up in the prefix cache.", double(s.cache.lookup_tokens));
  sample("vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.",
         double(s.cache.hit_tokens));
  sample("vllm:generation_tokens_total", "counter", "Generated tokens.",
         double(s.num_generated_tokens));
  sample("vllm:num_preemptions_total", "counter", "Preemptions.", double(s.num_preemptions));
  {
    std::lock_guard<std::mutex> lock(mu_);
    sample("vllm:prompt_tokens_total", "counter", "Prompt tokens of accepted requests.",
           double(prompt_tokens_));
    out +=
        "# HELP vllm:request_success_total Finished requests by finish reason.\n"
        "# TYPE vllm:request_success_total counter\n";
    for (const auto& [reason, n] : finished_by_reason_) {
      out += fmt::format("vllm:request_success_total{{{},finished_reason=\"{}\"}} {}\n", labels,
                         reason, n);
    }
  }
  ttft_.render("vllm:time_to_first_token_seconds", "Time to first token.", out, labels);
  tpot_.render("vllm:time_per_output_token_seconds", "Time per output token.", out, labels);
  e2e_.render("vllm:e2e_request_latency_seconds", "End-to-end request latency.", out, labels);
}

void render_engine_metrics(const EngineStats& s, std::string& out) {
  const char* family = nullptr;  // the metric of the last sample written
  for_each_stat(
      [&](const StatField& f, const auto& v) {
        if constexpr (std::is_arithmetic_v<std::remove_cvref_t<decltype(v)>>) {
          if (f.metric == nullptr) return;
          if (family == nullptr || std::strcmp(family, f.metric) != 0) {
            out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.metric, f.help, f.metric,
                               f.kind == StatKind::Counter ? "counter" : "gauge");
            family = f.metric;
          }
          const std::string labels = f.label ? fmt::format("{{{}}}", f.label) : std::string();
          out += fmt::format("{}{} {}\n", f.metric, labels, double(v));
        }
      },
      s);
  // The KV cache's dtype, as an info metric (Prometheus: a gauge of 1 whose label says it).
  if (!s.kv_cache_dtype.empty())
    out += fmt::format(
        "# HELP nanocascade_kv_cache_info The KV cache's element type.\n"
        "# TYPE nanocascade_kv_cache_info gauge\nnanocascade_kv_cache_info{{dtype=\"{}\"}} 1\n",
        s.kv_cache_dtype);
  // The linear layers' weight dtype (fp8_e4m3 under --quantization fp8), likewise.
  if (!s.weight_dtype.empty())
    out += fmt::format(
        "# HELP nanocascade_weights_info The linear layers' weight dtype.\n"
        "# TYPE nanocascade_weights_info gauge\nnanocascade_weights_info{{dtype=\"{}\"}} 1\n",
        s.weight_dtype);
  // Values computed from several fields.
  gauge(out, "nanocascade_kv_cache_usage_ratio", "Fraction of KV pages in use.",
        s.total_pages > 0 ? double(s.used_pages) / s.total_pages : 0.0);
  gauge(out, "nanocascade_cascade_last_step_levels", "Attention levels of the last step.",
        double(s.cache.last_step_pages_per_level.size()));
}

}  // namespace nc::server
