// Graph-safe attention plans (CudaAttention::plan_for_graph, cuda_attention.h): decode-only
// steps planned into a graph slot's fixed region.
//
// The own (last) level runs FlashInfer's decode kernel (or its FA2 prefill, by option or
// decode_choice.h's graph table), shared levels (cascade) its FA2 prefill without mask, each
// planned in FlashInfer's CUDA-graph mode. A shared level is padded to B
// entries with empty entries of no rows, so every plan of a slot has the same batch size and row
// count, hence the same grid and workspace layout; empty entries (rows without a prefix at that
// level) give an empty state that merges exactly.
#include <cstring>

#include "backend/cuda/cuda_attention.h"

namespace nc::cuda_host {
namespace {

// The step's levels as a graph plans them: padded copies of the shared levels, then the own
// level itself (pointers into `padded` and the step).
struct GraphLevels {
  std::vector<PagedKVBatch> padded;
  std::vector<const PagedKVBatch*> levels;
  const PagedKVBatch& own() const { return *levels.back(); }
};

}  // namespace

// Fills `out` and returns true when the step is a decode step a graph can run: B one-row entries
// of 1..max_pages pages in the own level, non-causal shared levels of at most B entries and
// B * max_pages pages on FA2. The own level runs the decode kernel where FlashInfer's has the
// head shape (graph_own_kernel), else FA2 (any GQA group, as in eager plans).
bool CudaAttention::pad_graph_levels(const AttentionStep& step, const AttentionShape& shape,
                                     int max_pages, std::vector<PagedKVBatch>& padded) const {
  const size_t nl = step.levels.size();
  if (nl == 0 || max_pages < 1) return false;
  const PagedKVBatch& own = step.levels.back();
  const int B = own.batch_size(), page_size = shape.kv.page_size;
  if (B == 0 || step.num_tokens != B) return false;
  // Shared levels are non-causal; anything else is not a cascade decode step.
  for (size_t l = 0; l + 1 < nl; ++l)
    if (step.levels[l].causal) return false;
  for (const PagedKVBatch& level : step.levels)
    level.validate(step.num_tokens, page_size, shape.kv.num_pages);
  for (int b = 0; b < B; ++b) {
    if (own.q_len(b) != 1 || own.num_pages(b) < 1 || own.num_pages(b) > max_pages) return false;
  }
  padded.resize(nl - 1);
  for (size_t l = 0; l + 1 < nl; ++l) {
    const PagedKVBatch& in = step.levels[l];
    // The sm90 kernel (entries of >= 128 rows) has no graph mode here: such steps run eagerly.
    if (in.causal || in.batch_size() > B ||
        int64_t(in.kv_indices.size()) > int64_t(B) * max_pages || use_sm90_kernel(shape, in))
      return false;
    padded[l] = in;
    while (padded[l].batch_size() < B) padded[l].add_pages(0, {}, 0, page_size);
  }
  return true;
}

std::unique_ptr<AttentionPlan> CudaAttention::plan_for_graph(const AttentionStep& step,
                                                             const AttentionShape& shape,
                                                             int slot_id, int max_pages) {
  validate_attention_shape(shape);
  GraphLevels g;
  if (!pad_graph_levels(step, shape, max_pages, g.padded)) return nullptr;
  for (const PagedKVBatch& level : g.padded) g.levels.push_back(&level);
  g.levels.push_back(&step.levels.back());
  const size_t nl = g.levels.size();
  const int B = g.own().batch_size(), page_size = shape.kv.page_size;
  const LevelKernel own_kernel = graph_own_kernel(shape, B);
  std::vector<cuda::PlanQuery> queries(nl);
  for (size_t l = 0; l < nl; ++l) {
    const PagedKVBatch& in = *g.levels[l];
    queries[l] = cuda::PlanQuery{.qo_indptr_h = in.qo_indptr.data(),
                                 .kv_indptr_h = in.kv_indptr.data(),
                                 .total_rows = B,
                                 .batch_size = B,
                                 .num_qo_heads = shape.num_qo_heads,
                                 .num_kv_heads = shape.num_kv_heads,
                                 .head_dim = shape.head_dim,
                                 .page_size = page_size,
                                 .cuda_graph = true};
    const bool own = l + 1 == nl;
    queries[l].window_left = own ? shape.window_left : -1;
    const LevelKernel kernel = graph_level_kernel(own, shape.head_dim, own_kernel);
    if (kernel != LevelKernel::Generic)
      queries[l].kernels = kernel_table(kernel, g.levels[l]->causal, own, shape);
  }
  GraphSlot& slot = slots_.get(slot_id, queries, max_pages);
  // The host side of the slot is rewritten only once its last copy has run.
  cuda_check(cudaEventSynchronize(slot.staging.copied), "waiting for a plan's metadata copy");
  auto plan = std::make_unique<CudaAttentionPlan>(ctx_);
  plan->shape = shape;
  plan->num_tokens = B;
  plan->staging = StagingView(slot.staging);
  plan->batch_indices = slot.batch_indices;
  plan->positions = slot.positions;
  for (size_t l = 0; l < nl; ++l) stage_level(plan->staging, slot.levels[l], *g.levels[l]);
  int32_t* bi = plan->staging.host_ptr(slot.batch_indices);
  int32_t* pos = plan->staging.host_ptr(slot.positions);
  for (int b = 0; b < B; ++b) bi[b] = b, pos[b] = g.own().kv_len(b, page_size) - 1;

  void* shared_ws = nullptr;
  if (nl > 1) carve_graph_cascade_state(*plan, slot, &shared_ws);
  for (size_t l = 0; l < nl; ++l) {
    const bool own = l + 1 == nl;
    LevelPlan lp;
    lp.batch_size = B;
    lp.causal = g.levels[l]->causal;
    lp.kernel = graph_level_kernel(own, shape.head_dim, own_kernel);
    lp.table = queries[l].kernels;
    lp.side = plan->overlap && !own;
    lp.arrays = slot.levels[l];
    lp.fixed_ws = own ? slot.own_ws : shared_ws;
    lp.fixed_ws_bytes = own ? slot.own_ws_bytes : slot.shared_ws_bytes;
    plan->levels.push_back(std::move(lp));
  }
  plan_levels(*plan, queries);
  upload_graph_metadata(slot, g.padded, g.own());
  // A graph replays the launch shape it was captured with; a plan that differs (it should
  // not: the batch size fixes it) runs eagerly instead.
  if (!slot.same_launch(plan->levels)) return nullptr;
  return plan;
}

// The shared levels run one after the other (on the side stream when overlapped, with fork and
// join events that stream capture records as graph dependencies), with their split-KV scratch
// and the merge states in the graph scratch: [shared scratch | out | out2 | lse x 3].
void CudaAttention::carve_graph_cascade_state(CudaAttentionPlan& plan, const GraphSlot& slot,
                                              void** shared_ws) {
  plan.overlap = options_.overlap_cascade_levels;
  if (plan.overlap) ctx_->ensure_side_stream();
  const size_t rows = size_t(plan.num_tokens) * plan.shape.num_qo_heads;
  StagingLayout lay(256);
  const auto ws = lay.add<std::byte>(slot.shared_ws_bytes);
  const auto out = lay.add<std::byte>(rows * plan.shape.head_dim * 2);
  const auto out2 = lay.add<std::byte>(rows * plan.shape.head_dim * 2);
  const auto lse_main = lay.add<float>(rows), lse_level = lay.add<float>(rows),
             lse_level2 = lay.add<float>(rows);
  StagingView scratch;
  scratch.dev = slots_.scratch(lay.size());
  *shared_ws = scratch.dev_ptr(ws);
  CascadeState& c = plan.cascade;
  c.level_out = scratch.dev_ptr(out);
  c.level_out2 = scratch.dev_ptr(out2);
  c.lse_main = scratch.dev_ptr(lse_main);
  c.lse_level = scratch.dev_ptr(lse_level);
  c.lse_level2 = scratch.dev_ptr(lse_level2);
}

// The slot's head (indptrs, last-page lengths, int workspaces, append slots) in one copy, then
// each level's page list as far as this step uses it.
void CudaAttention::upload_graph_metadata(const GraphSlot& slot,
                                          const std::vector<PagedKVBatch>& shared,
                                          const PagedKVBatch& own) {
  const cudaStream_t st = ctx_->stream;
  const StagingView view(slot.staging);
  cuda_check(cudaMemcpyAsync(view.dev, view.host, slot.head_bytes, cudaMemcpyHostToDevice, st),
             "graph plan metadata copy");
  for (size_t l = 0; l < slot.levels.size(); ++l) {
    const PagedKVBatch& in = l < shared.size() ? shared[l] : own;
    const StagedArray<int32_t> a = slot.levels[l].kv_indices;
    const size_t n = in.kv_indices.size() * 4;
    if (n == 0) continue;
    cuda_check(cudaMemcpyAsync(view.dev_ptr(a), view.host_ptr(a), n, cudaMemcpyHostToDevice, st),
               "graph plan page table copy");
  }
  cuda_check(cudaEventRecord(slot.staging.copied, st), "cudaEventRecord");
}

}  // namespace nc::cuda_host
