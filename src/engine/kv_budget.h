// KV-cache sizing (EngineConfig::kv_cache_memory): how many pages the engine allocates. The
// default budget is a fraction of the free device memory on CUDA and min(2 GiB, 25% of RAM) on
// the CPU; an explicit budget (bytes or a fraction) replaces it. Whatever the budget, the pool
// never holds more pages than max_num_seqs requests at max_model_len tokens could use at once,
// so a small model with a short context or few sequences gets a small pool. Pure arithmetic
// here; the engine asks the model for its free memory and bytes per page.
#pragma once
#include <cstdint>
#include <string>

namespace nc {

struct KvBudgetInputs {
  bool cuda = false;
  std::string kv_cache_memory;    // EngineConfig::kv_cache_memory ("" = the default)
  int64_t free_memory_bytes = 0;  // device memory free after weights and workspace
  int64_t physical_memory_bytes = 0;
  int64_t bytes_per_page = 0;
  int page_size = 16;
  int max_num_seqs = 1;
  int64_t max_model_len = 0;
};

// Whether the engine asks the model for its free memory: for the default (CUDA sizes from it;
// the CPU reports it in the stats) and for a fraction.
bool kv_budget_needs_free_memory(const std::string& kv_cache_memory);

// The budget in bytes before the cap: the default or the parsed kv_cache_memory.
int64_t kv_budget_bytes(const KvBudgetInputs& in);

// Pages that max_num_seqs requests of max_model_len tokens could use together (at least 1).
int64_t kv_useful_pages(int max_num_seqs, int64_t max_model_len, int page_size);

// Pages to allocate: the budget's pages, capped at kv_useful_pages. Throws nc::Error (naming the
// budget) when the budget holds no page.
int64_t kv_cache_pages(const KvBudgetInputs& in);

}  // namespace nc
