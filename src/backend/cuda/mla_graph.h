// Graph-safe MLA plans (Backend::plan_attention_graph for a shape with latent_dim > 0).
//
// A slot serves decode-only steps of one batch size B over a fixed number of levels (cascade:
// non-causal shared levels padded to B entries with empty ones, then the own level of B one-row
// entries), as the attention's graph slots do (cuda_graph_slots.h). Its staging region (a
// page-locked host buffer and its device mirror, at the same offsets) holds every level's CSR
// arrays, each row's entry and each token's append slot, then each level's page list sized for
// max_pages pages per entry; a plan writes the host side and copies only what the step uses,
// in stream order before the pass. The cascade merge state is fixed per slot too. The MLA
// kernels read everything else from those arrays, and their launch sizes depend on B and the
// head shape only, so a graph captured with one plan of a slot replays correctly after any later
// plan of it. A slot remade for a new shape drops graph `slot_id` (it read the old buffers).
// With FlashInfer's MLA kernels (mla_fi_host.h) the region also holds each level's int
// workspace, planned padded to B entries (so the grid, fixed by the head count, stays the
// captured one), and every slot shares one split-KV float workspace, whose size depends on the
// device only (it is made once: graphs replay in stream order, never at once).
#pragma once
#include <map>
#include <memory>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_graphs.h"
#include "backend/cuda/mla_fi_host.h"

namespace nc::cuda_host {

class MlaGraphSlots : NonCopyable {
 public:
  MlaGraphSlots(std::shared_ptr<Context> ctx, GraphRunner& graphs);
  ~MlaGraphSlots();

  // The step planned into slot `slot_id`, or null when it is not a decode step a graph can run
  // (B one-row entries of 1..max_pages pages, shared levels non-causal with at most B entries
  // and B * max_pages pages).
  std::unique_ptr<AttentionPlan> plan(const AttentionStep& step, const AttentionShape& shape,
                                      int slot_id, int max_pages);
  // Device bytes the slots hold now.
  int64_t device_bytes() const;

  struct Slot;

 private:
  Slot& get(int slot_id, int levels, int batch, int max_pages, const AttentionShape& shape,
            MlaKernel kernel);

  std::shared_ptr<Context> ctx_;
  GraphRunner& graphs_;
  std::map<int, std::unique_ptr<Slot>> slots_;
  FloatWorkspace fi_float_;  // FlashInfer's split-KV scratch, shared by the slots
};

}  // namespace nc::cuda_host
