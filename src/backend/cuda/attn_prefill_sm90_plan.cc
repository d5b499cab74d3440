// The plan of FlashInfer's Hopper batch prefill (kernels.h: sm90_prefill_workspace_size,
// sm90_prefill_plan): the work schedule of backend/sm90_schedule.h for this GPU's SM count, laid
// out in the int workspace and copied to the device. attn_prefill_sm90.cu runs it.
#include <algorithm>
#include <cstdlib>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernels.h"
#include "backend/sm90_schedule.h"
#include "core/error.h"

namespace nc::cuda {
namespace {

Sm90Level level_of(const PlanQuery& q) {
  Sm90Level l;
  l.qo_indptr = q.qo_indptr_h;
  l.kv_indptr = q.kv_indptr_h;
  l.kv_last_page_len = q.kv_last_page_len_h;
  l.batch_size = q.batch_size;
  l.total_rows = q.total_rows;
  l.num_qo_heads = q.num_qo_heads;
  l.head_dim = q.head_dim;
  l.page_size = q.page_size;
  return l;
}

// NC_SM90_CHUNK_PAGES forces the KV chunk in pages (0: no split); unset, the cost model chooses.
int forced_chunk_pages() {
  const char* env = std::getenv("NC_SM90_CHUNK_PAGES");
  return env != nullptr ? std::max(0, std::atoi(env)) : -1;
}

Sm90Schedule schedule_of(const Sm90Level& level) {
  return make_sm90_schedule(level, device_sm_count(), forced_chunk_pages());
}

}  // namespace

void sm90_prefill_workspace_size(const PlanQuery& q, size_t* float_bytes, size_t* int_bytes) {
  const Sm90Level level = level_of(q);
  const Sm90Schedule s = schedule_of(level);
  PlanInfo info;
  *int_bytes = layout_sm90_schedule(s, level, &info, nullptr);
  *float_bytes =
      s.chunk_pages > 0 ? sm90_split_buffers(s.rep_rows, q.num_qo_heads, q.head_dim).bytes : 0;
}

PlanInfo sm90_prefill_plan(const PlanQuery& q, const PlanWorkspace& ws, cudaStream_t stream) {
  const Sm90Level level = level_of(q);
  const Sm90Schedule s = schedule_of(level);
  PlanInfo info;
  const size_t bytes = layout_sm90_schedule(s, level, &info, nullptr);
  NC_CHECK(bytes <= ws.int_bytes, "sm90 prefill plan: int workspace of {} bytes, {} needed",
           ws.int_bytes, bytes);
  if (s.chunk_pages > 0) {
    const size_t need = sm90_split_buffers(s.rep_rows, q.num_qo_heads, q.head_dim).bytes;
    NC_CHECK(need <= ws.float_bytes, "sm90 prefill plan: float workspace of {} bytes, {} needed",
             ws.float_bytes, need);
  }
  layout_sm90_schedule(s, level, &info, static_cast<char*>(ws.int_pinned));
  cuda_host::cuda_check(
      cudaMemcpyAsync(ws.int_ws, ws.int_pinned, bytes, cudaMemcpyHostToDevice, stream),
      "sm90 prefill plan copy");
  return info;
}

}  // namespace nc::cuda
