// PrefixTree's host tier (prefix_tree.h, kv/host_tier.h): offloading evicted device nodes to host
// pages, dropping host leaves when the tier is full, restoring host nodes on a match, and giving a
// host node the device pages of a request that computed the same tokens again.
#include <queue>

#include "core/error.h"
#include "kv/host_tier.h"
#include "kv/prefix_tree.h"

namespace nc {

size_t PrefixTree::restore_path(const std::vector<Node*>& path) {
  size_t first_host = 0;
  while (first_host < path.size() && !path[first_host]->on_host) ++first_host;
  if (first_host == path.size()) return first_host;
  int host_pages = 0;
  for (size_t i = first_host; i < path.size(); ++i) host_pages += int(path[i]->pages.size());
  if (opt_.reload_worth && !opt_.reload_worth(host_pages)) {
    stats_.host_declined_tokens += int64_t(host_pages) * opt_.page_size;
    return first_host;
  }
  // Restoring allocates device pages, which may evict (offload) other nodes and drop host
  // leaves: the path's nodes are off limits meanwhile.
  for (Node* n : path) n->busy = true;
  size_t done = first_host;
  while (done < path.size() && restore_node(path[done])) {
    stats_.host_hit_tokens += int64_t(path[done]->pages.size()) * opt_.page_size;
    ++done;
  }
  for (Node* n : path) n->busy = false;
  return done;
}

bool PrefixTree::restore_node(Node* n) {
  std::vector<int32_t> device;
  if (!pool_.restore(int(n->pages.size()), device)) return false;  // Free -> Cached
  for (size_t i = 0; i < device.size(); ++i) opt_.host->restore(n->pages[i], device[i]);
  n->pages = std::move(device);
  n->on_host = false;
  return true;
}

void PrefixTree::offload(Node* n) {
  const int need = int(n->pages.size());
  if (opt_.host->num_free() < need) drop_host(need - opt_.host->num_free());
  if (opt_.host->num_free() < need) {  // the tier cannot hold it: gone, with its host subtree
    drop_subtree(n);
    return;
  }
  stats_.evicted_pages += need;
  for (int32_t& p : n->pages) {
    const int32_t h = opt_.host->offload(p);  // the copy is queued before the page is reused
    pool_.uncache(p);                         // Cached -> Free
    p = h;
  }
  n->on_host = true;
}

void PrefixTree::drop_host(int num_pages) {
  const double t = now();
  using Item = std::pair<EvictionPolicy::Key, Node*>;
  auto later = [](const Item& a, const Item& b) { return a.first > b.first; };
  std::priority_queue<Item, std::vector<Item>, decltype(later)> heap(later);
  auto droppable = [](const Node& n) { return n.on_host && !n.busy && n.children.empty(); };
  std::vector<Node*> stack{&root_};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (droppable(*n)) heap.push({opt_.policy->key(view(*n, t)), n});
    for (auto& [key, child] : n->children) stack.push_back(child.get());
  }
  int freed = 0;
  while (freed < num_pages && !heap.empty()) {
    Node* n = heap.top().second;
    heap.pop();
    Node* parent = n->parent;
    freed += int(n->pages.size());
    remove_leaf(n);
    if (droppable(*parent)) heap.push({opt_.policy->key(view(*parent, t)), parent});
  }
}

void PrefixTree::drop_subtree(Node* n) {
  // Leaf by leaf, without recursion (a long conversation is a deep chain).
  for (;;) {
    Node* leaf = n;
    while (!leaf->children.empty()) leaf = leaf->children.begin()->second.get();
    const bool last = leaf == n;
    remove_leaf(leaf);
    if (last) return;
  }
}

void PrefixTree::adopt_pages(Node& n, int k, const int32_t* pages) {
  NC_CHECK(k == int(n.pages.size()), "prefix tree: host node {} adopts {} of its {} pages", n.id, k,
           n.pages.size());
  for (int j = 0; j < k; ++j) {
    NC_CHECK(pool_.refcount(pages[j]) > 0 && !pool_.held_by_cache(pages[j]),
             "prefix tree: page {} over host node {} is not the request's own", pages[j], n.id);
    opt_.host->drop(n.pages[j]);  // the device copy supersedes it
    pool_.set_cached(pages[j]);
    n.pages[j] = pages[j];
  }
  n.on_host = false;
}

}  // namespace nc
