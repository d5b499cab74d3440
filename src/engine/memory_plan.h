// The memory plan: what an engine configuration takes on its backend, computed by the function
// the Engine itself sizes its KV cache with (one code path: Engine::Impl::allocate_kv_cache calls
// plan_memory, and `nanocascade memory` calls it through plan_memory_for_config).
//
// plan_memory needs the model after reserve() (its weights and activation workspace are in
// place, so a fraction budget is of the memory free then) and allocates nothing itself. The plan
// gives the KV cache's pages and bytes (kv_budget.h: the budget's pages, capped at what
// max_num_seqs requests of max_model_len tokens use), the tokens they hold, and, for a request
// length N, the pages one request takes and how many such requests fit in the pool at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/step_model.h"
#include "nanocascade/engine.h"

namespace nc {

struct MemoryPlan {
  std::string backend;
  int page_size = 0;
  int max_model_len = 0;
  int max_num_seqs = 0;
  int64_t weight_bytes = 0;
  std::string weight_dtype;           // of the linear layers (StepModel::weight_dtype)
  int64_t workspace_bytes = 0;        // the activation workspace the model's reserve() allocated
  int64_t free_memory_bytes = 0;      // device memory free when sized (0 when not asked for)
  int64_t budget_bytes = 0;           // the KV budget before the cap
  int64_t bytes_per_page = 0;         // all layers, K and V
  int64_t bounds_bytes_per_page = 0;  // sparse attention's page bounds (0 when off)
  std::string kv_dtype;            // of the pages (StepModel::kv_cache_dtype: f32, bf16, fp8_e4m3)
  int64_t bytes_per_token = 0;     // bytes_per_page / page_size
  int64_t pages = 0;               // pages the engine allocates
  int64_t kv_bytes = 0;            // pages * (bytes_per_page + bounds_bytes_per_page)
  int64_t bounds_bytes = 0;        // pages * bounds_bytes_per_page
  int64_t tokens = 0;              // pages * page_size
  int request_len = 0;             // N (default: max_model_len)
  int64_t pages_per_request = 0;   // ceil(N / page_size)
  int64_t requests_that_fit = 0;   // pages / pages_per_request
  int64_t requests_at_once = 0;    // min(requests_that_fit, max_num_seqs)
  int64_t sampling_bytes = 0;      // the backend's sampling scratch (part of workspace_bytes)
  int64_t graph_pool_bytes = 0;    // CUDA graph pools (0 before capture; 0 on the CPU)
  int64_t host_bytes = 0;          // the host tier's budget (EngineConfig::host_kv_cache)
  int64_t host_pages = 0;          // host pages of bytes_per_page each (0: no tier)
  int64_t host_tokens = 0;         // host_pages * page_size
  int64_t host_staging_bytes = 0;  // device memory the tier's copies hold (CUDA's staging buffer)
};

// EngineConfig::host_kv_cache in bytes (0 when off; a fraction is of physical memory). Throws
// nc::Error naming both sizes when it exceeds the machine's physical memory (sysconf), so the
// engine fails before loading anything.
int64_t host_kv_cache_bytes(const EngineConfig& cfg);

// The context length the engine serves: cfg.max_model_len, or the model's when 0. Throws
// nc::Error when cfg's exceeds the model's.
int resolve_max_model_len(const EngineConfig& cfg, const StepModel& model);

// The KV cache plan for `model` (reserve() done) under cfg, for requests of request_len tokens
// (0 = max_model_len). Throws nc::Error when the budget holds no page or request_len is outside
// 1..max_model_len.
MemoryPlan plan_memory(const EngineConfig& cfg, const StepModel& model, int max_model_len,
                       int request_len = 0);

// Builds the model as Engine(cfg) does (weights loaded, workspace reserved; no KV cache) and
// plans it. Throws nc::Error naming the sizes when not even one request of request_len fits.
MemoryPlan plan_memory_for_config(const EngineConfig& cfg, int request_len);

// The model Engine(cfg) serves (llama_runner.cc).
std::unique_ptr<StepModel> make_step_model(const EngineConfig& cfg);

// Throws nc::Error (naming request length, pages and budget) when plan.requests_that_fit is 0.
void check_one_request_fits(const MemoryPlan& plan);

}  // namespace nc
