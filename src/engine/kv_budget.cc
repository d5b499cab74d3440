#include "engine/kv_budget.h"

#include <algorithm>

#include "kv/page_pool.h"

namespace nc {

namespace {
constexpr int64_t kCpuDefaultCap = int64_t(2) << 30;  // 2 GiB
constexpr double kCudaDefaultFraction = 0.9;
}  // namespace

bool kv_budget_needs_free_memory(const std::string& kv_cache_memory) {
  if (kv_cache_memory.empty()) return true;
  return parse_memory_budget(kv_cache_memory).is_fraction;
}

int64_t kv_budget_bytes(const KvBudgetInputs& in) {
  if (!in.kv_cache_memory.empty()) {
    return parse_memory_budget(in.kv_cache_memory).resolve(in.free_memory_bytes);
  }
  if (in.cuda) return MemoryBudget{true, kCudaDefaultFraction, 0}.resolve(in.free_memory_bytes);
  return std::min<int64_t>(kCpuDefaultCap, in.physical_memory_bytes / 4);
}

int64_t kv_useful_pages(int max_num_seqs, int64_t max_model_len, int page_size) {
  const int64_t per_request = (max_model_len + page_size - 1) / page_size;
  return std::max<int64_t>(int64_t(max_num_seqs) * per_request, 1);
}

int64_t kv_cache_pages(const KvBudgetInputs& in) {
  const int64_t pages = pages_for_budget(kv_budget_bytes(in), in.bytes_per_page);
  return std::min(pages, kv_useful_pages(in.max_num_seqs, in.max_model_len, in.page_size));
}

}  // namespace nc
