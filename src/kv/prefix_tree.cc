#include "kv/prefix_tree.h"

#include <algorithm>
#include <chrono>
#include <queue>
#include <unordered_set>

#include "core/error.h"
#include "kv/host_tier.h"

namespace nc {

PrefixTree::PrefixTree(PagePool& pool, PrefixTreeOptions options)
    : pool_(pool), opt_(std::move(options)) {
  NC_CHECK(opt_.page_size >= 1 && opt_.page_size <= 256, "prefix tree: page size {} outside 1..256",
           opt_.page_size);
  if (!opt_.policy) opt_.policy = std::make_shared<LruPolicy>();
  if (opt_.enabled) pool_.set_evictor([this](int needed) { return evict(needed); });
}

PrefixTree::~PrefixTree() {
  if (!opt_.enabled) return;
  pool_.set_evictor(nullptr);
  for (auto& [key, child] : root_.children) release_all(child.get());
}

void PrefixTree::release_all(Node* n) {
  for (auto& [key, child] : n->children) release_all(child.get());
  for (int32_t p : n->pages) n->on_host ? opt_.host->drop(p) : pool_.uncache(p);
}

double PrefixTree::now() const {
  if (opt_.clock) return opt_.clock();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int32_t> PrefixTree::block(const std::vector<int32_t>& tokens, int page) const {
  const auto first = tokens.begin() + int64_t(page) * opt_.page_size;
  return std::vector<int32_t>(first, first + opt_.page_size);
}

bool PrefixTree::block_equal(const Node& n, int node_page, const std::vector<int32_t>& tokens,
                             int page) const {
  const int ps = opt_.page_size;
  return std::equal(n.tokens.begin() + int64_t(node_page) * ps,
                    n.tokens.begin() + int64_t(node_page + 1) * ps,
                    tokens.begin() + int64_t(page) * ps);
}

void PrefixTree::split(Node* n, int k) {
  NC_CHECK(k > 0 && k < int(n->pages.size()), "prefix tree: split of a {}-page node at {}",
           n->pages.size(), k);
  auto tail = std::make_unique<Node>();
  tail->id = next_id_++;
  tail->parent = n;
  tail->pages.assign(n->pages.begin() + k, n->pages.end());
  tail->tokens.assign(n->tokens.begin() + int64_t(k) * opt_.page_size, n->tokens.end());
  tail->children = std::move(n->children);
  for (auto& [key, child] : tail->children) child->parent = tail.get();
  tail->last_access = n->last_access;
  tail->sessions = n->sessions;
  tail->on_host = n->on_host;
  n->pages.resize(k);
  n->tokens.resize(int64_t(k) * opt_.page_size);
  n->children.clear();
  std::vector<int32_t> key = block(tail->tokens, 0);
  n->children.emplace(std::move(key), std::move(tail));
}

void PrefixTree::touch(Node* n, int64_t session) {
  n->last_access = ++clock_;
  if (session >= 0 && pins_.count(session) &&
      std::find(n->sessions.begin(), n->sessions.end(), session) == n->sessions.end()) {
    n->sessions.push_back(session);
  }
}

template <typename NodeT, typename Visit>
void PrefixTree::for_each_node(NodeT& root, Visit&& visit) {
  struct Entry {
    const std::vector<int32_t>* key;
    NodeT* node;
    NodeT* parent;
  };
  std::vector<Entry> stack{{nullptr, &root, nullptr}};
  while (!stack.empty()) {
    const Entry e = stack.back();
    stack.pop_back();
    if (e.node != &root) visit(*e.key, *e.node, *e.parent);
    for (auto& [key, child] : e.node->children) stack.push_back({&key, child.get(), e.node});
  }
}

int PrefixTree::matching_pages(const Node& n, const std::vector<int32_t>& tokens, int first,
                               int limit) const {
  int k = 1;  // the key is the first block
  while (k < int(n.pages.size()) && first + k < limit && block_equal(n, k, tokens, first + k)) {
    ++k;
  }
  return k;
}

template <typename NodeT, typename Visit>
int PrefixTree::walk(NodeT& root, const std::vector<int32_t>& tokens, int max_pages, Visit&& visit,
                     NodeT** last) const {
  NodeT* node = &root;
  int matched = 0;
  while (matched < max_pages) {
    auto it = node->children.find(block(tokens, matched));
    if (it == node->children.end()) break;
    NodeT* child = it->second.get();
    const int k = matching_pages(*child, tokens, matched, max_pages);
    visit(*child, matched, k);
    matched += k;
    if (k < int(child->pages.size())) break;  // ends inside a node the visit did not split
    node = child;
  }
  if (last) *last = node;
  return matched;
}

PrefixMatch PrefixTree::match(const std::vector<int32_t>& tokens, int64_t session) {
  PrefixMatch m;
  if (!opt_.enabled) return m;
  stats_.queried_tokens += int64_t(tokens.size());
  const int max_pages = tokens.empty() ? 0 : int((tokens.size() - 1) / opt_.page_size);
  std::vector<Node*> path;
  walk(
      root_, tokens, max_pages,
      [&](Node& child, int, int k) {
        if (k < int(child.pages.size())) split(&child, k);
        touch(&child, session);
        path.push_back(&child);
      },
      static_cast<Node**>(nullptr));
  // Host-resident nodes come back to the device first (or end the match).
  path.resize(restore_path(path));
  for (Node* n : path) {
    m.path.push_back({n->id, int(n->pages.size())});
    m.pages.insert(m.pages.end(), n->pages.begin(), n->pages.end());
  }
  for (int32_t p : m.pages) pool_.inc_ref(p);
  m.num_tokens = int(m.pages.size()) * opt_.page_size;
  stats_.hit_tokens += m.num_tokens;
  return m;
}

int PrefixTree::peek(const std::vector<int32_t>& tokens) const {
  if (!opt_.enabled) return 0;
  const int max_pages = tokens.empty() ? 0 : int((tokens.size() - 1) / opt_.page_size);
  const int matched = walk(
      root_, tokens, max_pages, [](const Node&, int, int) {}, static_cast<const Node**>(nullptr));
  return matched * opt_.page_size;
}

void PrefixTree::share_pages(const Node& child, int k, int32_t* pages) {
  for (int j = 0; j < k; ++j) {
    int32_t& own = pages[j];
    if (own == child.pages[j]) continue;
    pool_.inc_ref(child.pages[j]);
    pool_.dec_ref(own);
    own = child.pages[j];
    ++stats_.deduplicated_pages;
  }
}

void PrefixTree::add_leaf(Node* parent, const std::vector<int32_t>& tokens,
                          const std::vector<int32_t>& pages, int first, int end, int64_t session) {
  auto leaf = std::make_unique<Node>();
  leaf->id = next_id_++;
  leaf->parent = parent;
  leaf->pages.assign(pages.begin() + first, pages.begin() + end);
  leaf->tokens.assign(tokens.begin() + int64_t(first) * opt_.page_size,
                      tokens.begin() + int64_t(end) * opt_.page_size);
  for (int32_t p : leaf->pages) {
    NC_CHECK(pool_.refcount(p) > 0, "prefix tree: insert of page {} that the request does not hold",
             p);
    NC_CHECK(!pool_.held_by_cache(p), "prefix tree: page {} is already cached in another node", p);
    pool_.set_cached(p);
  }
  touch(leaf.get(), session);
  std::vector<int32_t> key = block(leaf->tokens, 0);
  parent->children.emplace(std::move(key), std::move(leaf));
}

int PrefixTree::insert(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages,
                       int64_t session) {
  if (!opt_.enabled) return 0;
  const int n_full = int(std::min<size_t>(tokens.size() / opt_.page_size, pages.size()));
  // Shared part: walk the existing nodes, swapping duplicate pages for the tree's.
  Node* node = nullptr;
  const int done = walk(
      root_, tokens, n_full,
      [&](Node& child, int first, int k) {
        if (k < int(child.pages.size())) split(&child, k);
        if (child.on_host) {
          adopt_pages(child, k, pages.data() + first);
        } else {
          share_pages(child, k, pages.data() + first);
        }
        touch(&child, session);
      },
      &node);
  const int added = n_full - done;
  if (added > 0) add_leaf(node, tokens, pages, done, n_full, session);  // the rest: one new leaf
  stats_.inserted_pages += added;
  return added;
}

bool PrefixTree::evictable(const Node& n) const {
  // A device node whose children (if any) are all on the host: it can go to the host (or, with
  // no host tier, a leaf can be dropped).
  if (n.parent == nullptr || n.on_host || n.busy) return false;
  for (const auto& [key, child] : n.children)
    if (!opt_.host || !child->on_host) return false;
  return std::all_of(n.pages.begin(), n.pages.end(),
                     [&](int32_t p) { return pool_.refcount(p) == 0; });
}

PrefixNodeView PrefixTree::view(const Node& n, double t) const {
  PrefixNodeView v{n.id, int(n.pages.size()), n.last_access, false};
  for (int64_t s : n.sessions) {
    auto it = pins_.find(s);
    if (it != pins_.end() && it->second > t) v.pinned = true;
  }
  return v;
}

void PrefixTree::remove_leaf(Node* n) {
  for (int32_t p : n->pages) n->on_host ? opt_.host->drop(p) : pool_.uncache(p);
  if (!n->on_host) stats_.evicted_pages += int64_t(n->pages.size());
  Node* parent = n->parent;
  parent->children.erase(block(n->tokens, 0));  // destroys n
}

int PrefixTree::evict(int num_pages) {
  if (!opt_.enabled || num_pages <= 0) return 0;
  const double t = now();
  using Item = std::pair<EvictionPolicy::Key, Node*>;
  auto later = [](const Item& a, const Item& b) { return a.first > b.first; };
  std::priority_queue<Item, std::vector<Item>, decltype(later)> heap(later);
  // Collect the evictable leaves (the root never is one).
  for_each_node(root_, [&](const std::vector<int32_t>&, Node& n, Node&) {
    if (evictable(n)) heap.push({opt_.policy->key(view(n, t)), &n});
  });
  int freed = 0;
  while (freed < num_pages && !heap.empty()) {
    Node* n = heap.top().second;
    heap.pop();
    Node* parent = n->parent;
    freed += int(n->pages.size());
    if (opt_.host) {
      offload(n);
    } else {
      remove_leaf(n);
    }
    if (evictable(*parent)) heap.push({opt_.policy->key(view(*parent, t)), parent});
  }
  return freed;
}

void PrefixTree::pin_session(int64_t session, double expires_at) {
  NC_CHECK(session >= 0, "prefix tree: session id must be >= 0, got {}", session);
  pins_[session] = expires_at;
}

void PrefixTree::unpin_session(int64_t session) {
  pins_.erase(session);
}

PrefixTreeStats PrefixTree::stats() const {
  PrefixTreeStats s = stats_;
  for_each_node(root_, [&](const std::vector<int32_t>&, const Node& n, const Node&) {
    ++s.num_nodes;
    if (n.on_host) {
      s.host_pages += int(n.pages.size());
      return;
    }
    s.num_pages += int(n.pages.size());
    for (int32_t p : n.pages) s.num_cached_only += pool_.refcount(p) == 0;
  });
  return s;
}

void PrefixTree::check_invariants(const std::vector<std::vector<int32_t>>* live_pages) const {
  pool_.check_invariants();
  const int ps = opt_.page_size;
  std::unordered_set<int32_t> tree_pages, host_pages;
  NC_CHECK(root_.pages.empty() && root_.tokens.empty(), "prefix tree: the root holds pages");
  for_each_node(root_, [&](const std::vector<int32_t>& key, const Node& n, const Node& parent) {
    NC_CHECK(n.parent == &parent, "prefix tree: node {} has a wrong parent", n.id);
    NC_CHECK(key.size() == size_t(ps) && std::equal(key.begin(), key.end(), n.tokens.begin()),
             "prefix tree: node {} is filed under a key that is not its first block", n.id);
    NC_CHECK(!n.pages.empty(), "prefix tree: node {} is empty", n.id);
    NC_CHECK(n.tokens.size() == n.pages.size() * size_t(ps),
             "prefix tree: node {} has {} tokens for {} pages of {}", n.id, n.tokens.size(),
             n.pages.size(), ps);
    NC_CHECK(!n.busy, "prefix tree: node {} is still marked busy", n.id);
    if (n.on_host) {
      NC_CHECK(opt_.host, "prefix tree: node {} is on the host without a host tier", n.id);
      for (int32_t p : n.pages) {
        NC_CHECK(host_pages.insert(p).second, "prefix tree: host page {} is in two nodes", p);
        NC_CHECK(opt_.host->held(p), "prefix tree: host page {} of node {} is not held", p, n.id);
      }
      return;
    }
    NC_CHECK(!parent.on_host, "prefix tree: device node {} under a host node {}", n.id, parent.id);
    for (int32_t p : n.pages) {
      NC_CHECK(tree_pages.insert(p).second, "prefix tree: page {} is in two nodes", p);
      NC_CHECK(pool_.held_by_cache(p), "prefix tree: page {} of node {} lacks the cache hold", p,
               n.id);
    }
  });
  if (opt_.host) {
    opt_.host->check_invariants();
    NC_CHECK(opt_.host->num_held() == int(host_pages.size()),
             "prefix tree: host tier holds {} pages, the tree's host nodes {}",
             opt_.host->num_held(), host_pages.size());
  }
  int held = 0;
  for (int p = 0; p < pool_.num_pages(); ++p) held += pool_.held_by_cache(p);
  NC_CHECK(held == int(tree_pages.size()),
           "prefix tree: pool has {} cache-held pages, tree holds {}", held, tree_pages.size());
  if (!live_pages) return;
  std::vector<int> holders(pool_.num_pages(), 0);
  for (const auto& list : *live_pages) {
    for (int32_t p : list) {
      NC_CHECK(p >= 0 && p < pool_.num_pages(), "prefix tree: live page {} out of range", p);
      ++holders[p];
    }
  }
  for (int p = 0; p < pool_.num_pages(); ++p) {
    NC_CHECK(pool_.refcount(p) == holders[p], "prefix tree: page {} has refcount {} but {} holders",
             p, pool_.refcount(p), holders[p]);
  }
}

}  // namespace nc
