// CascadePlanner: turns one step's requests into a multi-level AttentionStep (cascade
// attention) whose shared levels read each shared prefix page once for all its sharers.
//
// Where sharing comes from: only the prefix tree shares pages, and a shared page always holds
// the same tokens at the same position for every holder. So two requests of a step share a
// prefix exactly as far as their page lists agree from the start, and the planner builds the
// sharing structure from the page ids themselves: a compressed trie over the step's page lists
// (restricted to each request's pages that lie wholly before its first new token). Its nodes
// with two or more sharers are the tree-path nodes the step's requests have in common; chains
// of tree nodes with the same sharers collapse into one node (same bytes, fewer levels), and
// a tree node split after a request matched it needs no bookkeeping.
//
// Levels: a kept shared node at depth d (counting only kept ancestors) is one entry of level
// d, spanning the query rows of all its sharers (contiguous, because requests are ordered
// depth-first by their path), over the node's pages and those of its folded ancestors below
// its nearest kept one (a folded node's pages are read once per kept descendant), non-causal.
// A request with nothing at a level gets an empty entry (0 pages, kv_last_page_len 0) for its
// rows. The last level holds, per request, every page not read by a shared level (its own
// pages, the new tokens' slots, and the pages of shared nodes the cost model folded back below
// its deepest kept one), causal. So a request's entries, level by level, are consecutive
// stretches of its sequence (kv/sliding_window.h relies on it). All levels index the same
// physical pages: nothing is copied.
//
// Order: the planner returns `order`, the permutation of the input requests in the step:
// request order[i] is the i-th entry of every level, and the caller lays out the step's token
// rows (q, k, v, positions) in that order. The order is stable: requests are grouped
// depth-first and otherwise keep their input order, so an input that already lists sharers
// contiguously (e.g. sorted by tree path) comes back with the identity permutation.
//
// Cost model (per layer, in microseconds; see docs/cascade.md and CascadeCostModel):
//   saved(node)  = max(plain reads, compute) - max(one read, compute), plain reads being one
//                  read when all the step's shared nodes fit in L2, else one per sharer
//   cost(level)  = level_overhead_us + num_step_rows * extra_bytes_per_row / bandwidth
// A level is kept when the sum of saved() over its nodes exceeds cost(level); the level with
// the worst net gain is folded first and the levels are recomputed until every level pays
// (and there are at most max_shared_levels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kv/paged_kv.h"

namespace nc {

enum class CascadeMode : uint8_t {
  Off,     // one level: plain paged attention in input order
  Auto,    // shared levels where the cost model says they pay
  Always,  // every shared node with two or more sharers gets its level (tests, benchmarks)
};

// Per-layer time model of a cascade level on the GPU (CUDA backend, FlashInfer kernels). The
// defaults are measured on an H100 80GB HBM3 (2026-11-26, nc_gpu_bench cascade; see
// docs/cascade.md and docs/benchmarks.md, "Cascade attention").
struct CascadeCostModel {
  // K+V bytes of one token in one layer (2 * num_kv_heads * head_dim * dtype bytes).
  double kv_bytes_per_token = 2 * 8 * 128 * 2;
  // Attention FLOPs of one query row against one key token in one layer: q.k and p.v over all
  // query heads, 2 FLOPs per multiply-add: 4 * num_qo_heads * head_dim.
  double flops_per_row_token = 4 * 32 * 128;
  // Device memory bandwidth for a first read, bytes per microsecond (measured copy: 3.0 TB/s).
  double bandwidth_bytes_per_us = 3.0e6;
  // Rate at which plain paged attention re-reads a page other requests of the step also read:
  // part of the re-reads hit L2. Measured: 3.0x the copy bandwidth (shared prefixes of 4k-32k
  // tokens, batch 16-256).
  double reread_bandwidth_bytes_per_us = 9.0e6;
  // When the step's shared nodes together hold at most this many bytes per layer they stay in
  // L2 while their sharers re-read them, so plain attention pays about one read per node and a
  // level saves nothing. Beyond it (e.g. 32 groups of a 2k-token system prompt: 256 MiB per
  // layer on Qwen3-0.6B) re-reads go at reread_bandwidth_bytes_per_us.
  double l2_resident_bytes = 8 << 20;
  // Effective rate of the kernel that runs a shared level (FlashInfer's FA2 prefill over all
  // sharers' rows), FLOPs per microsecond: measured 290-320 TFLOP/s at 128-256 rows.
  double flops_per_us = 2.9e8;
  // Extra time a level costs per query row of the step (the merge kernel reading and writing
  // the partial states), expressed in bytes at bandwidth_bytes_per_us: measured ~0.04 us/row.
  double extra_bytes_per_row = 1.2e5;
  // Fixed cost of one more level per layer: the shared level's kernel (its launch and tail) and
  // the merge: measured 20-30 us on one stream.
  double level_overhead_us = 25.0;
  // Levels kept at most (the deepest sharing gets folded first beyond this).
  int max_shared_levels = 8;
  int num_layers = 1;  // only scales the reported byte counts

  // Time a shared node saves: plain attention reads its bytes once per sharer (about once in
  // all when the step's shared nodes fit in L2: in_l2), the shared level once; either takes at
  // least its FLOPs' time (rows: the sharers' query rows). May be negative.
  double saved_us(int sharers, int rows, int64_t tokens, bool in_l2) const;
  // Whether shared nodes holding this many tokens in all stay in L2 (l2_resident_bytes).
  bool fits_l2(int64_t shared_tokens) const;
  double level_cost_us(int num_step_rows) const;
};

struct CascadeRequest {
  int q_len = 0;               // new tokens this step (>= 1)
  int kv_len = 0;              // tokens in the KV after this step, including the new ones
  std::vector<int32_t> pages;  // all its pages, ceil(kv_len / page_size) of them
  // Leading pages that may be shared (those it got from the prefix tree); -1: any page wholly
  // before the first new token. Either way a page holding a new token is never shared.
  int max_shared_pages = -1;
};

struct CascadeStats {
  int num_levels = 1;        // step.levels.size()
  int num_shared_nodes = 0;  // trie nodes with two or more sharers
  int num_kept_nodes = 0;    // of which read through a shared level
  // KV bytes the step's attention reads (all layers): plain paged vs the plan's levels.
  double kv_bytes_plain = 0;
  double kv_bytes_cascade = 0;
  std::vector<int> pages_per_level;  // page entries of each level (last = own level)
};

struct CascadePlan {
  AttentionStep step;
  std::vector<int> order;  // order[i] = input index of the step's i-th request
  CascadeStats stats;
};

class CascadePlanner {
 public:
  CascadePlanner(int page_size, CascadeMode mode = CascadeMode::Auto, CascadeCostModel cost = {});

  CascadeMode mode() const { return mode_; }
  const CascadeCostModel& cost_model() const { return cost_; }
  void set_cost_model(const CascadeCostModel& cost) { cost_ = cost; }

  // Throws nc::Error on inconsistent requests (q_len < 1, kv_len < q_len, a page count that
  // does not match kv_len, the same page at two positions).
  CascadePlan plan(const std::vector<CascadeRequest>& requests) const;

 private:
  int page_size_;
  CascadeMode mode_;
  CascadeCostModel cost_;
};

std::string to_string(CascadeMode mode);

}  // namespace nc
