// PrefixTree: the prefix cache, a radix tree over page-aligned token blocks.
//
// Each node holds a run of FULL pages (page ids) and the tokens in them (page_size per page);
// a node's children are keyed by their first block of page_size tokens. A path from the root
// spells a token prefix whose K/V lives in the path's pages.
//
// Page ownership (PagePool, see page_pool.h): the tree holds its pages through the pool's cache
// flag (set_cached), never through a reference. References belong to live requests only, so a
// tree page that no request uses sits at refcount 0 in state Cached, and eviction (uncache) is
// allowed exactly then. match() takes one reference per matched page for the new request;
// insert() only adds the cache flag to the request's pages (and swaps its duplicates for the
// tree's, see insert); the request still drops its references itself when it finishes.
//
// Eviction: the tree registers itself as the pool's Evictor. evict(n) frees whole leaves whose
// pages all have refcount 0, in the order of an EvictionPolicy (least recently used by default;
// PinnedSessionPolicy keeps nodes touched by a pinned session until the others are gone).
//
// Host tier (options.host, kv/host_tier.h; prefix_tree_host.cc): a node is device-resident (its
// pages are PagePool ids) or host-resident (HostTier ids); every descendant of a host-resident
// node is host-resident, so a path from the root is device nodes, then host nodes. With a host
// tier, eviction moves a device node with no device child to the host (its K/V copied, its device
// pages Cached -> Free) instead of dropping it; when the host tier is full, host leaves are dropped
// in the same policy order (one logical clock orders both tiers: LRU across them). A match that
// reaches host nodes restores them (PagePool::restore: fresh device pages, copies queued) when
// options.reload_worth says the copy beats recomputing, before taking its references; an insert
// whose pages cover a host node gives that node the request's device pages (the host copy is
// dropped). Every cached page is in exactly one tier, in one node.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kv/page_pool.h"

namespace nc {

// What an eviction policy sees of a leaf that could be evicted.
struct PrefixNodeView {
  int64_t id = 0;
  int num_pages = 0;
  uint64_t last_access = 0;  // logical clock: larger = used more recently
  bool pinned = false;       // touched by a session whose pin has not expired
};

// Eviction order: leaves with smaller keys go first.
class EvictionPolicy {
 public:
  using Key = std::pair<int64_t, uint64_t>;
  virtual ~EvictionPolicy() = default;
  virtual std::string name() const = 0;
  virtual Key key(const PrefixNodeView& node) const = 0;
};

// Least recently used first.
class LruPolicy : public EvictionPolicy {
 public:
  std::string name() const override { return "lru"; }
  Key key(const PrefixNodeView& n) const override { return {0, n.last_access}; }
};

// Unpinned nodes first (LRU among them), then pinned ones (LRU among them).
class PinnedSessionPolicy : public EvictionPolicy {
 public:
  std::string name() const override { return "pinned"; }
  Key key(const PrefixNodeView& n) const override { return {n.pinned ? 1 : 0, n.last_access}; }
};

class HostTier;

struct PrefixTreeOptions {
  bool enabled = true;
  HostTier* host =
      nullptr;  // the host tier (outlives the tree), or null: evicted pages are dropped
  // Whether to copy `pages` host pages back for a match rather than recompute their tokens;
  // null: always.
  std::function<bool(int pages)> reload_worth;
  int page_size = 16;
  std::shared_ptr<const EvictionPolicy> policy;  // null: LRU
  // Seconds on some monotonic clock, for session pin expiry; null: std::chrono::steady_clock.
  std::function<double()> clock;
};

// One node of a match's path, as it was when matched (a later split may cut the node).
struct PrefixPathNode {
  int64_t id = 0;
  int num_pages = 0;
};

struct PrefixMatch {
  std::vector<int32_t> pages;        // the matched pages, in order; one reference taken on each
  int num_tokens = 0;                // pages.size() * page_size
  std::vector<PrefixPathNode> path;  // the nodes those pages come from, outermost first
};

struct PrefixTreeStats {
  int num_nodes = 0;                 // excluding the root
  int num_pages = 0;                 // pages held by the tree
  int num_cached_only = 0;           // of which at refcount 0
  int64_t queried_tokens = 0;        // tokens presented to match()
  int64_t hit_tokens = 0;            // tokens match() found
  int64_t inserted_pages = 0;        // pages added by insert()
  int64_t deduplicated_pages = 0;    // request pages insert() replaced by the tree's copy
  int64_t evicted_pages = 0;         // device pages evicted (to the host tier or dropped)
  int host_pages = 0;                // host pages the tree holds (host-resident nodes)
  int64_t host_hit_tokens = 0;       // tokens of hit_tokens whose pages came back from the host
  int64_t host_declined_tokens = 0;  // host hits recomputed instead (reload_worth said no)
  double hit_rate() const { return queried_tokens ? double(hit_tokens) / queried_tokens : 0.0; }
};

class PrefixTree {
 public:
  // Registers evict() as the pool's evictor (when enabled); the pool must outlive the tree.
  PrefixTree(PagePool& pool, PrefixTreeOptions options = {});
  ~PrefixTree();  // gives every page back (uncache) and unregisters the evictor
  PrefixTree(const PrefixTree&) = delete;
  PrefixTree& operator=(const PrefixTree&) = delete;

  bool enabled() const { return opt_.enabled; }
  int page_size() const { return opt_.page_size; }

  // The longest cached prefix of `tokens` in whole pages, leaving at least the last token to
  // compute: at most (tokens.size() - 1) / page_size pages. Takes a reference on every returned
  // page (the caller drops them with PagePool::dec_ref when the request ends), marks the path
  // as used now (LRU) and by `session` (>= 0) for the pinned policy. A match that ends inside a
  // node splits the node there, so the path is made of whole nodes.
  PrefixMatch match(const std::vector<int32_t>& tokens, int64_t session = -1);

  // Caches the full pages of a request: `tokens` are the tokens whose K/V is in `pages` (all of
  // them computed), so the first min(tokens.size() / page_size, pages.size()) pages are
  // inserted. The request must hold a reference on each of them. A page whose block the tree
  // already holds under another id is a duplicate: `pages[i]` is replaced by the tree's page
  // (a reference taken on it, the request's reference on its own copy dropped, which frees that
  // copy), so the request keeps exactly one reference per entry of `pages` and the tree never
  // holds two copies of a block. Returns the number of pages newly cached.
  int insert(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages, int64_t session = -1);

  // Frees at least `num_pages` pages if it can: evicts whole leaves whose pages all have
  // refcount 0, in policy order (a parent whose last child went becomes a candidate).
  // Returns the number of pages freed (may exceed the request, or fall short).
  int evict(int num_pages);
  // Evicts every evictable node (with a host tier: moves them to the host, as far as it holds).
  int evict_all() { return evict(pool_.num_pages()); }

  // Sessions for PinnedSessionPolicy: nodes a session touches (match or insert) while its pin
  // holds are evicted only after all unpinned ones. `expires_at` is on options.clock.
  void pin_session(int64_t session, double expires_at);
  void unpin_session(int64_t session);
  // The time on options.clock (seconds), for pin expiries.
  double now() const;

  PrefixTreeStats stats() const;
  // Tokens the tree could serve for `tokens` right now (no references, no LRU update; pages on
  // the host tier count, though match() may decline to restore them).
  int peek(const std::vector<int32_t>& tokens) const;

  // Throws nc::Error when the tree or the pool is inconsistent: node shape (tokens = pages *
  // page_size, child keys, parents), a tree page without the cache hold or in two nodes, a
  // cache-held page outside the tree, pool accounting. When `live_pages` is given (the page
  // lists of all live requests), also: every page's refcount equals its number of holders.
  void check_invariants(const std::vector<std::vector<int32_t>>* live_pages = nullptr) const;

 private:
  struct Node {
    int64_t id = 0;
    Node* parent = nullptr;
    std::vector<int32_t> tokens;  // pages.size() * page_size
    std::vector<int32_t> pages;
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;  // by first block
    uint64_t last_access = 0;
    std::vector<int64_t> sessions;  // sessions that touched it (only pinned ones are recorded)
    bool on_host = false;           // pages are HostTier ids (prefix_tree_host.cc)
    bool busy = false;              // on a match's path while it restores: never evicted
  };

  std::vector<int32_t> block(const std::vector<int32_t>& tokens, int page) const;
  bool block_equal(const Node& n, int node_page, const std::vector<int32_t>& tokens,
                   int page) const;
  // How many leading pages of `n` match `tokens` from page `first` on (at least 1: the caller
  // found n under that block), stopping before page `limit` of `tokens`.
  int matching_pages(const Node& n, const std::vector<int32_t>& tokens, int first, int limit) const;
  // The one walk of match, peek and insert: from the root, follows the child filed under the
  // next block of `tokens`, for at most `max_pages` pages. visit(child, first, k) sees each node
  // reached (`first`: its first page's index in `tokens`; k: its matching leading pages); a node
  // still longer than k after the visit (not split by it) ends the walk. Returns the number of
  // pages matched; `last` gets the deepest node whose pages all matched (the root when none).
  template <typename NodeT, typename Visit>
  int walk(NodeT& root, const std::vector<int32_t>& tokens, int max_pages, Visit&& visit,
           NodeT** last) const;
  // Visits every node below `root` (not the root), each as visit(key, node, parent) with `key` the
  // block it is filed under in parent.children; iteratively (trees can be deep), depth first.
  template <typename NodeT, typename Visit>
  static void for_each_node(NodeT& root, Visit&& visit);
  // Leaves the first `k` pages in `n`, moving the rest (and n's children) into a new child.
  void split(Node* n, int k);
  void touch(Node* n, int64_t session);
  // insert()'s two halves: the request takes the tree's copy of `child`'s first k pages (its own
  // duplicates dropped), and pages [first, end) of the request become one new leaf of `parent`.
  void share_pages(const Node& child, int k, int32_t* pages);
  void add_leaf(Node* parent, const std::vector<int32_t>& tokens, const std::vector<int32_t>& pages,
                int first, int end, int64_t session);
  bool evictable(const Node& n) const;
  // Host tier (prefix_tree_host.cc). The number of leading `path` nodes left device-resident
  // after restoring its host nodes (all of them, some, or none when not worth it).
  size_t restore_path(const std::vector<Node*>& path);
  bool restore_node(Node* n);
  // Moves device node `n` (no device child, pages at refcount 0) to the host, dropping host
  // leaves to make room; drops n with its subtree when the tier cannot hold it.
  void offload(Node* n);
  // Drops host leaves (never busy ones) in policy order until `num_pages` pages are free.
  void drop_host(int num_pages);
  void drop_subtree(Node* n);
  // insert() over host node `n`: its first k pages become the request's `pages` (device).
  void adopt_pages(Node& n, int k, const int32_t* pages);
  PrefixNodeView view(const Node& n, double now) const;
  void remove_leaf(Node* n);  // a device leaf's pages uncached, a host leaf's dropped
  void release_all(Node* n);

  PagePool& pool_;
  PrefixTreeOptions opt_;
  Node root_;
  uint64_t clock_ = 0;
  int64_t next_id_ = 1;
  std::unordered_map<int64_t, double> pins_;  // session -> expiry
  PrefixTreeStats stats_;
};

}  // namespace nc
