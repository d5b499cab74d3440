// Engine::Impl: the parts one Engine is made of, for the files that implement Engine
// (engine.cc: set-up, the public calls and the step recipe; the statistics). The step loop itself
// is StepPipeline (step_pipeline.h), the request lifecycle RequestTable (request.h), the
// statistics accounting StepAccounting (step_accounting.h).
//
// Ownership and order: the members are destroyed in reverse order, so the pipeline (whose step
// in flight names requests) goes first, then the requests, then the prefix tree, which gives its
// pages back to the pool before the pool goes. The scheduler holds raw pointers to the requests'
// Sequences while they are unfinished.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "engine/grammar.h"
#include "engine/memory_events.h"
#include "engine/prefix_cache.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/step_accounting.h"
#include "engine/step_model.h"
#include "engine/step_pipeline.h"
#include "engine/streaming_window.h"
#include "kv/cascade_planner.h"
#include "kv/host_tier.h"
#include "kv/page_pool.h"
#include "kv/prefix_tree.h"
#include "nanocascade/engine.h"

namespace nc {

// Sparse attention's settings (EngineConfig::sparse_budget and its companions): nc::Error
// (InvalidArgument) naming the values (engine_sparse.cc).
void check_sparse_config(const EngineConfig& cfg);

struct Engine::Impl {
  EngineConfig cfg;
  std::unique_ptr<StepModel> model;
  std::unique_ptr<TextCodec> codec;
  std::unique_ptr<GrammarCache> grammars;  // structured output (compiles on first use)
  std::unique_ptr<PagePool> pool;
  std::unique_ptr<StreamingWindow> streaming;  // null unless streaming_window > 0
  std::unique_ptr<Scheduler> sched;
  // Prefix cache and cascade (null when disabled). The host tier (null when off) outlives the
  // tree, which gives its host pages back when it goes.
  std::unique_ptr<HostTier> host;
  std::unique_ptr<PrefixTree> tree;
  std::unique_ptr<TreePrefixCache> prefix_cache;
  std::unique_ptr<CascadePlanner> planner;
  int max_model_len = 0;
  int vocab = 0;
  int64_t kv_bytes = 0;
  int64_t host_pages = 0;  // the host tier's (0: off)
  EngineStats st;
  std::map<std::string, int64_t> sessions;  // session name -> the tree's session id
  std::unique_ptr<RequestTable> requests;
  std::unique_ptr<StepAccounting> accounting;
  std::unique_ptr<StepPipeline> pipeline;
  MemoryHookList memory_hooks;

  Impl(const EngineConfig& c, std::unique_ptr<StepModel> m, std::unique_ptr<TextCodec> t);
  // Sizes the KV cache from the memory budget and allocates it; returns the number of pages.
  int64_t allocate_kv_cache(int64_t bytes_per_page, KVLayout layout);
  void setup_cache(int64_t kv_bytes_per_page, bool cuda);
  // The prefix cache's host tier (EngineConfig::host_kv_cache), its memory on the model's side.
  void setup_host_tier(PrefixTreeOptions& o, int64_t kv_bytes_per_page);
  // Debug builds (or cfg.check_invariants): scheduler, prefix tree and host tier invariants after
  // each step.
  void check_invariants() const;
  // Refuses new requests once a host-tier copy failed (StepPipeline::kv_failure).
  void check_serving() const;
  // Sparse attention's invariant: (page id, valid slots) of every page whose contents are known
  // (running requests' computed tokens, cached pages whole), for StepModel::check_page_bounds.
  std::vector<int32_t> pages_with_contents() const;
  // The step's MemoryStepEvent to the registered hooks (memory_events.h).
  void emit_memory_event();
};

}  // namespace nc
