// The engine side of the prefix cache and cascade attention: the scheduler's PrefixCache hook
// backed by a PrefixTree, the cascade re-plan of a StepPlan, and page accounting by state.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/scheduler.h"
#include "engine/step_plan.h"
#include "kv/cascade_planner.h"
#include "kv/host_tier.h"
#include "kv/page_pool.h"
#include "kv/prefix_tree.h"
#include "nanocascade/stats.h"

namespace nc {

// Scheduler hook: at admission a request's tokens (prompt, plus generated ones after a
// preemption) are matched in the tree, its matched pages attached (references taken) and
// num_computed set past them; at finish, abort and preemption its computed full pages are
// inserted (duplicates swapped for the tree's pages) before the scheduler drops its references.
// A request with a share limit (Sequence::share_limit: a streaming request that may evict)
// matches and gives at most that many tokens' pages: its sink pages.
class TreePrefixCache : public PrefixCache {
 public:
  explicit TreePrefixCache(PrefixTree& tree) : tree_(tree) {}
  int match(Sequence& seq) override;
  int peek(const Sequence& seq) const override;
  void insert(Sequence& seq) override;
  PrefixTree& tree() { return tree_; }

 private:
  PrefixTree& tree_;
};

// Whether a prefix hit on host-tier pages is copied back or recomputed (PrefixTreeOptions::
// reload_worth): copy when
//   pages * page_bytes / kReloadBytesPerSecond + kReloadLatencyS
//     < pages * page_size * flops_per_token / kRecomputeFlopsPerSecond,
// with flops_per_token = the weights' bytes (2 FLOPs a parameter at 2 bytes a parameter, bf16).
// The constants are stated, not measured yet (tools/gpu_host_tier.sh measures the copy):
//   CUDA: 20 GB/s pinned host-to-device, 10 us a batch, 200 TFLOP/s prefill;
//   CPU:  5 GB/s memcpy, no latency, 50 GFLOP/s.
// On both, a copy beats recomputing for any real model (a 135M-parameter model recomputes a
// 16-token page in ~30 ms on the CPU, its 0.7 MB copy takes ~0.15 ms); only a model with almost
// no weights (a test double) recomputes.
struct HostReloadRule {
  int64_t page_bytes = 0;
  int page_size = 16;
  double flops_per_token = 0;
  bool cuda = false;
  bool worth(int pages) const;
};

// Rebuilds `plan` for cascade attention: its entries, token rows, positions and logit rows are
// put in the planner's depth-first order and its attention becomes the planner's levels.
// When the planner makes no shared level, `plan` stays as it is (its plain paged attention is
// that plan). Returns the planner's statistics.
CascadeStats apply_cascade(StepPlan& plan, const CascadePlanner& planner);

// Pages by state: free, used by one request (private), used by two or more (shared), and
// cached only (refcount 0, held by the prefix tree).
struct PageUsage {
  int free = 0;
  int private_used = 0;
  int shared_used = 0;
  int cached_only = 0;
};
PageUsage page_usage(const PagePool& pool);

// The host tier's statistics from the tier and the tree that uses it.
HostTierStats host_tier_stats(const HostTier& host, const PrefixTreeStats& tree);

}  // namespace nc
