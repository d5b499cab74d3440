// Graph slots and the graph scratch (cuda_graph_slots.h).
#include "backend/cuda/cuda_graph_slots.h"

#include <cstring>

namespace nc::cuda_host {

SlotShape SlotShape::of(const std::vector<cuda::PlanQuery>& queries, int max_pages) {
  const cuda::PlanQuery& q = queries.back();
  return {int(queries.size()), q.batch_size, max_pages,   q.num_qo_heads,
          q.num_kv_heads,      q.head_dim,   q.page_size, q.kernels};
}

bool GraphSlot::same_launch(const std::vector<LevelPlan>& planned) {
  bool same = true;
  for (size_t l = 0; l < planned.size(); ++l) {
    if (first_launch[l].empty()) first_launch[l] = planned[l].info;
    same = same && planned[l].info == first_launch[l];
  }
  return same;
}

GraphSlots::~GraphSlots() {
  cudaStreamSynchronize(ctx_->stream);
  if (ctx_->side) cudaStreamSynchronize(ctx_->side);
  for (auto& [key, slot] : slots_) release(slot);
  for (void* p : retired_) cudaFree(p);
  if (scratch_) cudaFree(scratch_);
}

GraphSlot& GraphSlots::get(int slot_id, const std::vector<cuda::PlanQuery>& queries,
                           int max_pages) {
  GraphSlot& g = slots_[slot_id];
  if (g.shape == SlotShape::of(queries, max_pages)) return g;
  if (g.shape.batch != 0) {
    ctx_->synchronize();
    release(g);
    // Every graph, not graph `slot_id`: a model with several layer kinds numbers its slots
    // key * kinds + kind (llama_graphs.cc), so the graph that read this slot has another key.
    graphs_.clear();
  }
  try {
    make(g, queries, max_pages);
  } catch (...) {  // a failed allocation: free what was made, leave an empty slot
    release(g);
    throw;
  }
  return g;
}

void GraphSlots::make(GraphSlot& g, const std::vector<cuda::PlanQuery>& queries, int max_pages) {
  const cuda::PlanQuery& q = queries.back();
  const size_t B = size_t(q.batch_size), nl = queries.size();
  size_t own_fb = 0, shared_fb = 0;
  std::vector<size_t> int_bytes(nl);
  for (size_t l = 0; l < nl; ++l) {
    size_t fb = 0;
    const bool own = l + 1 == nl;
    // The own level runs the decode kernel or FA2 (graph_own_kernel): its table tells which;
    // head dims on our generic kernel have no table.
    const LevelKernel kernel =
        !queries[l].kernels ? graph_level_kernel(own, q.head_dim, LevelKernel::Decode)
        : own && queries[l].kernels->decode_run != nullptr ? LevelKernel::Decode
                                                           : LevelKernel::Prefill;
    level_workspace_size(kernel, queries[l], &fb, &int_bytes[l]);
    size_t& need = own ? own_fb : shared_fb;
    need = std::max(need, fb);
  }
  StagingLayout lay;
  g.levels.assign(nl, LevelArrays{});
  g.first_launch.assign(nl, cuda::PlanInfo{});
  for (size_t l = 0; l < nl; ++l) {
    LevelArrays& a = g.levels[l];
    a.qo_indptr = lay.add<int32_t>(B + 1);
    a.kv_indptr = lay.add<int32_t>(B + 1);
    a.last_page_len = lay.add<int32_t>(B);
    a.int_ws = lay.add<std::byte>(int_region_bytes(int_bytes[l]));
  }
  g.batch_indices = lay.add<int32_t>(B);
  g.positions = lay.add<int32_t>(B);
  g.head_bytes = lay.size();
  // A shared level holds at most one entry per row, each over a prefix of that row's pages.
  for (LevelArrays& a : g.levels) a.kv_indices = lay.add<int32_t>(B * size_t(max_pages));
  allocate_region(g, lay.size(), own_fb);
  g.shared_ws_bytes = shared_fb;
  g.shape = SlotShape::of(queries, max_pages);
}

// The slot's staging region (zeroed, its copy event recorded) and its own split-KV scratch.
void GraphSlots::allocate_region(GraphSlot& g, size_t bytes, size_t own_float_bytes) {
  g.staging.capacity = align_up(bytes, 4096);
  cuda_check(cudaHostAlloc(&g.staging.host, g.staging.capacity, cudaHostAllocDefault),
             "cudaHostAlloc (graph plan)");
  std::memset(g.staging.host, 0, g.staging.capacity);
  cuda_check(cudaMalloc(&g.staging.dev, g.staging.capacity), "cudaMalloc (graph plan)");
  cuda_check(cudaEventCreateWithFlags(&g.staging.copied, cudaEventDisableTiming),
             "cudaEventCreate");
  cuda_check(cudaEventRecord(g.staging.copied, ctx_->stream), "cudaEventRecord");
  g.own_ws_bytes = std::max<size_t>(align_up(own_float_bytes, 256), 256);
  cuda_check(cudaMalloc(&g.own_ws, g.own_ws_bytes), "cudaMalloc (graph split-kv scratch)");
}

void GraphSlots::release(GraphSlot& g) {
  release_staging(g.staging);
  if (g.own_ws) cudaFree(g.own_ws);
  g = GraphSlot{};
}

// A replaced buffer is retired, not freed: graphs captured with it keep reading it (each slot's
// use of it is fixed).
char* GraphSlots::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    // Allocated before the old one is retired: a failed allocation leaves the old one in place.
    const size_t want = std::max(align_up(bytes, size_t(1) << 20), 2 * scratch_bytes_);
    void* fresh = nullptr;
    cuda_check(cudaMalloc(&fresh, want), "cudaMalloc (graph cascade scratch)");
    if (scratch_) retired_.push_back(scratch_), retired_bytes_ += scratch_bytes_;
    scratch_ = fresh;
    scratch_bytes_ = want;
  }
  return static_cast<char*>(scratch_);
}

void GraphSlots::free_retired_scratch() {
  if (retired_.empty()) return;
  ctx_->synchronize();  // no replay still reads a retired buffer
  for (void* p : retired_) cudaFree(p);
  retired_.clear();
  retired_bytes_ = 0;
}

int64_t GraphSlots::device_bytes() const {
  size_t n = scratch_bytes_ + retired_bytes_;
  for (const auto& [key, g] : slots_) n += g.staging.dev ? g.staging.capacity + g.own_ws_bytes : 0;
  return int64_t(n);
}

}  // namespace nc::cuda_host
