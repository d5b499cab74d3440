// Sparse decode attention's engine parts (docs/long_context.md): the settings' checks and the
// pages whose bounds check_invariants compares with their contents.
#include <algorithm>
#include <map>

#include "core/error.h"
#include "engine/engine_impl.h"

namespace nc {

// Sparse attention's settings (EngineConfig::sparse_budget): errors naming the values.
void check_sparse_config(const EngineConfig& cfg) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.sparse_budget >= 0,
              "engine: sparse_budget must be >= 0 (0: off), got {}", cfg.sparse_budget);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              cfg.sparse_sink_pages >= 0 && cfg.sparse_window >= 0 && cfg.sparse_dense_layers >= 0,
              "engine: sparse sink pages {}, window {}, dense layers {} (each needs >= 0)",
              cfg.sparse_sink_pages, cfg.sparse_window, cfg.sparse_dense_layers);
  const int64_t floor = int64_t(cfg.sparse_sink_pages) * cfg.page_size + cfg.sparse_window;
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.sparse_budget == 0 || cfg.sparse_budget >= floor,
              "engine: sparse_budget {} below the sinks + window ({} pages of {} + {} tokens = {})",
              cfg.sparse_budget, cfg.sparse_sink_pages, cfg.page_size, cfg.sparse_window, floor);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              !cfg.sparse_per_head || cfg.sparse_budget == 0 || cfg.kv_layout == "HND",
              "engine: sparse_per_head needs kv_layout HND (a KV head's block of a page is "
              "contiguous only there), got kv_layout {}",
              cfg.kv_layout);
}

std::vector<int32_t> Engine::Impl::pages_with_contents() const {
  const int ps = cfg.page_size;
  std::map<int32_t, int> slots;  // page -> valid slots
  for (const Sequence* s : sched->running())
    for (size_t i = 0; i < s->pages.size(); ++i) {
      const int n = std::min(ps, s->num_computed - int(i) * ps);
      if (n > 0) slots[s->pages[i]] = std::max(slots[s->pages[i]], n);
    }
  for (int p = 0; p < pool->num_pages(); ++p)
    if (pool->held_by_cache(p)) slots[p] = ps;  // the tree holds whole pages
  std::vector<int32_t> out;
  for (const auto& [page, n] : slots) out.insert(out.end(), {page, int32_t(n)});
  return out;
}

}  // namespace nc
