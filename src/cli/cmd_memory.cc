// nanocascade memory: the memory plan of an engine configuration on its backend (weights,
// workspace, KV pages and the tokens they hold, per-request pages at a length and how many such
// requests fit), computed by the function the engine sizes its KV cache with (memory_plan.h).
// It loads the model (weights and workspace are measured, not estimated) but allocates no KV
// cache and runs nothing. Not even one request fitting is an error, before any serving starts.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/tp_ranks.h"
#include "engine/memory_plan.h"

namespace nc::cli {
namespace {

struct MemoryArgs {
  EngineFlags engine;
  int request_len = 0;
  bool json = false;
};

std::string mib(int64_t bytes) {
  return fmt::format("{:.1f} MiB", double(bytes) / 1048576.0);
}

void print_plan(const MemoryPlan& p) {
  fmt::print("backend            {}\n", p.backend);
  fmt::print("weights            {}{}\n", mib(p.weight_bytes),
             p.weight_dtype.empty() ? "" : " (linear layers " + p.weight_dtype + ")");
  fmt::print("workspace          {} (what reserve() allocated for max_num_batched_tokens)\n",
             mib(p.workspace_bytes));
  fmt::print("  sampling scratch {} (of the workspace: the backend's draw, reserved ahead)\n",
             mib(p.sampling_bytes));
  fmt::print("graph pools        {} ({})\n", mib(p.graph_pool_bytes),
             p.backend == "cuda" ? "now; CUDA graphs allocate their plan regions at capture"
                                 : "no graphs on this backend");
  if (p.free_memory_bytes) fmt::print("free when sized    {}\n", mib(p.free_memory_bytes));
  fmt::print("kv budget          {}\n", mib(p.budget_bytes));
  fmt::print("kv dtype           {} ({} bytes per token, all layers)\n", p.kv_dtype,
             p.bytes_per_token);
  fmt::print("kv bytes per page  {} ({} tokens per page)\n", p.bytes_per_page, p.page_size);
  if (p.bounds_bytes_per_page > 0)
    fmt::print("sparse bounds      {} bytes per page ({} in all, within the kv pages' bytes)\n",
               p.bounds_bytes_per_page, mib(p.bounds_bytes));
  fmt::print("kv pages           {} ({}, {} tokens)\n", p.pages, mib(p.kv_bytes), p.tokens);
  fmt::print("max model len      {}\n", p.max_model_len);
  fmt::print("per request        {} pages at {} tokens\n", p.pages_per_request, p.request_len);
  fmt::print("requests that fit  {} of {} tokens ({} at once with max_num_seqs {})\n",
             p.requests_that_fit, p.request_len, p.requests_at_once, p.max_num_seqs);
  if (p.host_pages > 0) {
    fmt::print("host kv tier       {} pages ({}, {} tokens; {} of {}-token requests)\n",
               p.host_pages, mib(p.host_pages * p.bytes_per_page), p.host_tokens,
               p.host_pages / p.pages_per_request, p.request_len);
    if (p.host_staging_bytes > 0)
      fmt::print("  copy staging     {} (device memory the tier's copies go through)\n",
                 mib(p.host_staging_bytes));
  } else {
    fmt::print("host kv tier       off (--host-kv-cache)\n");
  }
}

void print_json(const MemoryPlan& p) {
  nlohmann::ordered_json j = {{"backend", p.backend},
                              {"weight_bytes", p.weight_bytes},
                              {"weight_dtype", p.weight_dtype},
                              {"workspace_bytes", p.workspace_bytes},
                              {"free_memory_bytes", p.free_memory_bytes},
                              {"budget_bytes", p.budget_bytes},
                              {"kv_dtype", p.kv_dtype},
                              {"bytes_per_token", p.bytes_per_token},
                              {"bytes_per_page", p.bytes_per_page},
                              {"bounds_bytes_per_page", p.bounds_bytes_per_page},
                              {"page_size", p.page_size},
                              {"pages", p.pages},
                              {"kv_bytes", p.kv_bytes},
                              {"tokens", p.tokens},
                              {"max_model_len", p.max_model_len},
                              {"max_num_seqs", p.max_num_seqs},
                              {"request_len", p.request_len},
                              {"pages_per_request", p.pages_per_request},
                              {"requests_that_fit", p.requests_that_fit},
                              {"requests_at_once", p.requests_at_once},
                              {"sampling_bytes", p.sampling_bytes},
                              {"graph_pool_bytes", p.graph_pool_bytes},
                              {"host_bytes", p.host_bytes},
                              {"host_staging_bytes", p.host_staging_bytes},
                              {"host_pages", p.host_pages},
                              {"host_tokens", p.host_tokens}};
  fmt::print("{}\n", j.dump(2));
}

void run_memory(const MemoryArgs& a) {
  // Ranks that are processes join rank 0's group while it loads the model: they start here as
  // for every command (without them rank 0 waited 15 minutes for its peers).
  TensorParallelRanks ranks(a.engine);
  if (ranks.served()) return;  // this process was another rank of the group
  const MemoryPlan plan = plan_memory_for_config(ranks.config(), a.request_len);
  if (a.json) {
    print_json(plan);
  } else {
    print_plan(plan);
  }
}

}  // namespace

void add_memory_command(CLI::App& app) {
  auto args = std::make_shared<MemoryArgs>();
  CLI::App* cmd = app.add_subcommand(
      "memory", "print the memory plan of a configuration (weights, workspace, KV pages)");
  args->engine.add_to(*cmd, /*with_trace=*/false);
  cmd->add_option("--request-len", args->request_len,
                  "tokens per request for the per-request figures (0: max_model_len)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print the plan as JSON");
  cmd->callback([args] { run_memory(*args); });
}

}  // namespace nc::cli
