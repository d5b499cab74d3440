// Prometheus metrics of the server (text exposition format 0.0.4), rendered by GET /metrics: the
// server's own counters and latency histograms, then the engine's stats (the fields that
// nanocascade/stats.h gives a metric name, so a new one is added there, not here), then the
// same numbers under vLLM's names (vllm:num_requests_running, vllm:gpu_cache_usage_perc, ...,
// labelled model_name="<served model>") so that dashboards and routers made for vLLM read them.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "nanocascade/engine.h"

namespace nc::server {

// A cumulative histogram with fixed upper bounds (seconds). Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines (HELP and TYPE too); `labels` (e.g. model_name="m")
  // go on every sample.
  void render(const std::string& name, const std::string& help, std::string& out,
              const std::string& labels = "") const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Counters and histograms the HTTP layer and the engine loop update.
class ServerMetrics {
 public:
  ServerMetrics();

  void on_request_finished(int prompt_tokens, int completion_tokens, double ttft_s, double tpot_s,
                           double e2e_s, FinishReason reason);
  void on_http_response(int status);
  void on_prompt_tokens(int n);

  // The model_name label of the vLLM-named metrics.
  void set_model_name(std::string name) { model_name_ = std::move(name); }

  // The whole exposition: server counters plus the engine's latest stats.
  std::string render(const EngineStats& stats) const;

 private:
  void render_vllm(const EngineStats& s, std::string& out) const;

  std::string model_name_;
  mutable std::mutex mu_;
  int64_t prompt_tokens_ = 0;      // of accepted requests
  int64_t completion_tokens_ = 0;  // of finished requests
  std::map<std::string, int64_t> finished_by_reason_;
  std::map<int, int64_t> http_by_status_;
  Histogram ttft_, tpot_, e2e_;
};

// The engine's part: every EngineStats field for_each_stat names a metric for (nanocascade/
// stats.h), then the values computed from several fields (KV usage ratio, last step's levels).
void render_engine_metrics(const EngineStats& stats, std::string& out);

}  // namespace nc::server
