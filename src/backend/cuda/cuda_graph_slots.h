// Graph slots: the fixed device regions that graph-safe attention plans plan into.
//
// A slot serves decode-only steps of one batch size B over a fixed number of levels (cascade:
// non-causal shared levels padded to B entries, then the own level of B one-row entries). Its
// staging region holds every level's arrays at fixed offsets (the head: indptrs, last-page
// lengths, FlashInfer's int workspaces, append slots; then each level's page list, sized for
// max_pages per entry, so a step copies only the pages it uses), and it owns the own level's
// split-KV scratch. A graph captured with one plan of a slot replays correctly after any later
// plan of the slot: the addresses never move while the slot keeps its shape. A slot remade for a
// new shape drops its graph (that graph read the old buffers).
//
// The shared levels' split-KV scratch and the cascade merge states come from one graph scratch
// buffer shared by all slots (graphs replay one at a time on the main stream). It only grows; a
// replaced buffer is retired, not freed, while graphs captured with it may still replay.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_attention_plan.h"
#include "backend/cuda/cuda_graphs.h"

namespace nc::cuda_host {

// What a slot is made for: queries.size() levels of the last query's batch size and head shape,
// up to max_pages pages per entry (batch 0: not made yet).
struct SlotShape {
  int levels = 0, batch = 0, max_pages = 0;
  int num_qo_heads = 0, num_kv_heads = 0, head_dim = 0, page_size = 0;
  const cuda::AttnKernelTable* own_kernels = nullptr;  // the own (decode) level's variant
  static SlotShape of(const std::vector<cuda::PlanQuery>& queries, int max_pages);
  bool operator==(const SlotShape&) const = default;
};

struct GraphSlot {
  SlotShape shape;
  Staging staging;
  std::vector<LevelArrays> levels;  // levels.back(): the own level
  StagedArray<int32_t> batch_indices, positions;
  size_t head_bytes = 0;   // bytes before the first level's page list
  void* own_ws = nullptr;  // the own level's split-KV scratch
  size_t own_ws_bytes = 0;
  size_t shared_ws_bytes = 0;  // split-KV scratch of the shared levels (in the graph scratch)
  // Per level, the launch shape (FlashInfer's plan info) of the slot's first plan.
  std::vector<cuda::PlanInfo> first_launch;

  // Whether `levels` launch as the slot's first plan did (a graph replays the launch shape it was
  // captured with); the first call records them.
  bool same_launch(const std::vector<LevelPlan>& planned);
};

class GraphSlots : NonCopyable {
 public:
  GraphSlots(std::shared_ptr<Context> ctx, GraphRunner& graphs)
      : ctx_(std::move(ctx)), graphs_(graphs) {}
  ~GraphSlots();

  // The slot for queries.size() levels of queries.back().batch_size entries, (re)made when its
  // shape changes.
  GraphSlot& get(int slot_id, const std::vector<cuda::PlanQuery>& queries, int max_pages);
  // The graph scratch, at least `bytes` big.
  char* scratch(size_t bytes);
  // Frees retired scratch buffers once no graph can replay them (after the graphs are dropped);
  // synchronises when there are any.
  void free_retired_scratch();
  // Device bytes the slots and the graph scratch hold now (retired scratch included).
  int64_t device_bytes() const;

 private:
  void make(GraphSlot& g, const std::vector<cuda::PlanQuery>& queries, int max_pages);
  void allocate_region(GraphSlot& g, size_t bytes, size_t own_float_bytes);
  static void release(GraphSlot& g);

  std::shared_ptr<Context> ctx_;
  GraphRunner& graphs_;
  std::map<int, GraphSlot> slots_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::vector<void*> retired_;
  size_t retired_bytes_ = 0;
};

}  // namespace nc::cuda_host
