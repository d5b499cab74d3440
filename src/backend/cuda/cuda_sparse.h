// The CUDA backend's query-aware sparse decode attention (Backend's update_page_bounds,
// plan_sparse_attention and sparse_attention; Quest; the CPU reference is kv/page_bounds.h and
// kv/page_selection.h; kernels in sparse_kernels.h).
//
// Plan: how many pages each sparse entry keeps is known on the host (every page but the last
// counts page_size tokens, so the budget fixes the count; only which pages is the query's
// business). The plan is therefore an ordinary attention plan (CudaAttention::plan, the same
// kernel choice as a dense step of that shape) over the selected step's shape, whose own-level
// kv_indices are placeholders on the host and are rewritten on the device by every run. Beside
// it, a small table per sparse entry (sparse_kernels.h) and the entries' full page lists, in a
// staging region of their own, and a scores buffer; shared (cascade) levels stay dense
// (page_selection.h says why).
//
// Run, per layer, all on the stream, no host sync: the page scores from the bounds and the
// step's queries, the selection into the plan's own-level kv_indices, then the plan's attention
// (the step's k/v appended into each entry's last page, which selection always keeps).
//
// CUDA graphs: the run is stream-ordered kernels over fixed addresses, so a capture of one
// layer's run would replay correctly for as long as its plan lives, but the plan's metadata is
// per step (not a graph slot's fixed region): sparse steps run eager.
#pragma once
#include <memory>
#include <vector>

#include "backend/cuda/cuda_attention.h"

namespace nc::cuda_host {

class CudaSparse {
 public:
  CudaSparse(std::shared_ptr<Context> ctx, CudaAttention& attention)
      : ctx_(std::move(ctx)), attention_(attention) {}

  void update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv, const Tensor& page_slots,
                          Tensor bounds);
  std::unique_ptr<AttentionPlan> plan(const AttentionStep& step, const AttentionShape& shape,
                                      const PageSelection& sel);
  void run(const AttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
           Tensor kv_pages, const Tensor& bounds, Tensor out);

 private:
  std::shared_ptr<Context> ctx_;
  CudaAttention& attention_;
};

bool is_sparse_plan(const AttentionPlan& plan);
// The own level's kv_indices of a sparse plan as its last run left them (before any run: the
// host's placeholders), and the planned page count of each own-level entry. Synchronises.
// nc::Error when `plan` is not a CUDA sparse plan.
std::vector<int32_t> sparse_plan_selected_pages(const AttentionPlan& plan);
std::vector<int> sparse_plan_entry_pages(const AttentionPlan& plan);

}  // namespace nc::cuda_host
