// The engine side of the prefix cache and cascade attention: the scheduler's PrefixCache hook
// backed by a PrefixTree, the cascade re-plan of a StepPlan, and page accounting by state.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/scheduler.h"
#include "engine/step_plan.h"
#include "kv/cascade_planner.h"
#include "kv/page_pool.h"
#include "kv/prefix_tree.h"

namespace nc {

// Scheduler hook: at admission a request's tokens (prompt, plus generated ones after a
// preemption) are matched in the tree, its matched pages attached (references taken) and
// num_computed set past them; at finish, abort and preemption its computed full pages are
// inserted (duplicates swapped for the tree's pages) before the scheduler drops its references.
class TreePrefixCache : public PrefixCache {
 public:
  explicit TreePrefixCache(PrefixTree& tree) : tree_(tree) {}
  int match(Sequence& seq) override;
  int peek(const Sequence& seq) const override { return tree_.peek(seq.tokens); }
  void insert(Sequence& seq) override;
  PrefixTree& tree() { return tree_; }

 private:
  PrefixTree& tree_;
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

}  // namespace nc
