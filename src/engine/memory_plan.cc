#include "engine/memory_plan.h"

#include <algorithm>

#include "core/error.h"
#include "engine/kv_budget.h"
#include "kv/host_tier.h"
#include "kv/page_pool.h"

namespace nc {

int resolve_max_model_len(const EngineConfig& cfg, const StepModel& model) {
  const int model_max = model.max_position();
  if (cfg.max_model_len <= 0) return model_max;
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_model_len <= model_max,
              "engine: max_model_len {} exceeds the model's maximum of {} positions",
              cfg.max_model_len, model_max);
  return cfg.max_model_len;
}

namespace {

// On the CPU the pool's pages are taken as they are written: a budget past the machine's memory
// is accepted at start and ends, under load, in the OOM killer. Refused here instead, by name.
void check_fits_host(const EngineConfig& cfg, const MemoryPlan& p) {
  const int64_t physical = physical_memory_bytes();
  const int64_t need = p.kv_bytes + p.weight_bytes + p.workspace_bytes;
  constexpr double kGiB = double(int64_t(1) << 30);
  NC_CHECK_AS(ErrorKind::InvalidArgument, physical <= 0 || need <= physical,
              "kv cache memory '{}' is {:.1f} GiB ({} pages), which with the weights and "
              "workspace ({:.1f} GiB) is more than this machine's physical memory ({:.1f} GiB)",
              cfg.kv_cache_memory.empty() ? "(the default)" : cfg.kv_cache_memory,
              double(p.kv_bytes) / kGiB, p.pages, double(p.weight_bytes + p.workspace_bytes) / kGiB,
              double(physical) / kGiB);
}

}  // namespace

MemoryPlan plan_memory(const EngineConfig& cfg, const StepModel& model, int max_model_len,
                       int request_len) {
  MemoryPlan p;
  p.backend = cfg.backend;
  p.page_size = cfg.page_size;
  p.max_model_len = max_model_len;
  p.max_num_seqs = cfg.max_num_seqs;
  const ModelMemory mem = model.memory();
  p.weight_bytes = mem.weight_bytes;
  p.weight_dtype = model.weight_dtype();
  p.workspace_bytes = mem.workspace_bytes;
  KvBudgetInputs in;
  in.cuda = model.on_cuda();
  in.kv_cache_memory = cfg.kv_cache_memory;
  // Free memory is only asked for when needed (the default or a fraction).
  if (kv_budget_needs_free_memory(cfg.kv_cache_memory))
    p.free_memory_bytes = model.free_memory_bytes();
  in.free_memory_bytes = p.free_memory_bytes;
  if (!in.cuda && cfg.kv_cache_memory.empty()) in.physical_memory_bytes = physical_memory_bytes();
  // A page costs its K/V and, with sparse attention, its bounds: the budget's pages drop so.
  p.bounds_bytes_per_page = model.bounds_bytes_per_page();
  in.bytes_per_page = model.kv_bytes_per_page(cfg.page_size) + p.bounds_bytes_per_page;
  in.page_size = cfg.page_size;
  in.max_num_seqs = cfg.max_num_seqs;
  in.max_model_len = max_model_len;
  p.budget_bytes = kv_budget_bytes(in);
  p.bytes_per_page = in.bytes_per_page - p.bounds_bytes_per_page;
  p.kv_dtype = model.kv_cache_dtype();
  p.bytes_per_token = p.bytes_per_page / cfg.page_size;
  p.pages = kv_cache_pages(in);
  p.kv_bytes = p.pages * in.bytes_per_page;
  p.bounds_bytes = p.pages * p.bounds_bytes_per_page;
  p.tokens = p.pages * cfg.page_size;
  if (!in.cuda) check_fits_host(cfg, p);
  p.request_len = request_len != 0 ? request_len : max_model_len;
  NC_CHECK_AS(ErrorKind::InvalidArgument, p.request_len >= 1 && p.request_len <= max_model_len,
              "memory plan: request length {} outside 1..{} (max_model_len)", p.request_len,
              max_model_len);
  p.pages_per_request = (int64_t(p.request_len) + cfg.page_size - 1) / cfg.page_size;
  p.requests_that_fit = p.pages / p.pages_per_request;
  p.requests_at_once = std::min<int64_t>(p.requests_that_fit, cfg.max_num_seqs);
  p.sampling_bytes = model.sampling_bytes();
  p.graph_pool_bytes = model.graph_pool_bytes();
  p.host_bytes = host_kv_cache_bytes(cfg);
  if (p.host_bytes > 0 && cfg.enable_prefix_cache)
    p.host_pages = host_tier_pages(p.host_bytes, p.bytes_per_page, physical_memory_bytes());
  p.host_tokens = p.host_pages * cfg.page_size;
  if (p.host_pages > 0) p.host_staging_bytes = model.host_tier_device_bytes(p.bytes_per_page);
  return p;
}

int64_t host_kv_cache_bytes(const EngineConfig& cfg) {
  if (cfg.host_kv_cache.empty() || cfg.host_kv_cache == "0") return 0;
  MemoryBudget b;
  try {
    b = parse_memory_budget(cfg.host_kv_cache);
  } catch (const Error& e) {
    fail_as(ErrorKind::InvalidArgument, "host kv cache: {}", e.what());
  }
  const int64_t physical = physical_memory_bytes();
  const int64_t bytes = b.resolve(physical);
  NC_CHECK_AS(ErrorKind::InvalidArgument, bytes <= physical,
              "host kv cache '{}' is {} bytes ({:.1f} GiB), more than this machine's physical "
              "memory of {} bytes ({:.1f} GiB)",
              cfg.host_kv_cache, bytes, double(bytes) / double(1 << 30), physical,
              double(physical) / double(1 << 30));
  return bytes;
}

void check_one_request_fits(const MemoryPlan& p) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, p.requests_that_fit >= 1,
              "memory plan: one request of {} tokens needs {} pages ({} bytes) but the KV cache "
              "holds {} pages ({} bytes of a {}-byte budget); raise --kv-cache-memory or lower "
              "--request-len / --max-model-len",
              p.request_len, p.pages_per_request, p.pages_per_request * p.bytes_per_page, p.pages,
              p.kv_bytes, p.budget_bytes);
}

MemoryPlan plan_memory_for_config(const EngineConfig& cfg, int request_len) {
  std::unique_ptr<StepModel> model = make_step_model(cfg);
  model->reserve(cfg.max_num_batched_tokens, cfg.max_num_seqs);
  MemoryPlan p = plan_memory(cfg, *model, resolve_max_model_len(cfg, *model), request_len);
  check_one_request_fits(p);
  return p;
}

}  // namespace nc
