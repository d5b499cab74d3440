// Random steps whose requests share prefixes (a forest of shared page runs, as the prefix tree
// leaves them), for the cascade planner and window_view tests: each request takes a root path
// of the forest (the last node possibly in part), private history, then 1 new token (decode) or
// a prefill chunk. Physical page ids are scattered.
#pragma once
#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kv/cascade_planner.h"

namespace nc::testing {

struct SharedPrefixScenario {
  int page_size = 16;
  std::vector<CascadeRequest> reqs;
  int num_pages = 0;
};

inline SharedPrefixScenario shared_prefix_scenario(std::mt19937& rng, int page_size, int depth,
                                                   int num_reqs, int max_chunk = 40) {
  SharedPrefixScenario sc;
  sc.page_size = page_size;
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  struct Node {
    int parent = -1;
    std::vector<int32_t> pages;
  };
  std::vector<Node> nodes;
  std::vector<int> frontier{-1};
  for (int d = 0; d < depth; ++d) {
    std::vector<int> next;
    for (int parent : frontier)
      for (int c = rnd(1, parent < 0 ? 2 : 3); c > 0; --c) {
        Node n{parent, {}};
        for (int p = rnd(1, 3); p > 0; --p) n.pages.push_back(sc.num_pages++);
        next.push_back(int(nodes.size()));
        nodes.push_back(std::move(n));
      }
    frontier = std::move(next);
  }
  for (int r = 0; r < num_reqs; ++r) {
    std::vector<int> chain;
    for (int n = rnd(-1, int(nodes.size()) - 1); n >= 0; n = nodes[size_t(n)].parent)
      chain.push_back(n);
    std::reverse(chain.begin(), chain.end());
    CascadeRequest q;
    for (size_t i = 0; i < chain.size(); ++i) {
      const auto& pages = nodes[size_t(chain[i])].pages;
      const int take = i + 1 == chain.size() ? rnd(1, int(pages.size())) : int(pages.size());
      q.pages.insert(q.pages.end(), pages.begin(), pages.begin() + take);
    }
    const int own_history = rnd(0, 2 * page_size + 3);
    q.q_len = rnd(0, 2) == 0 ? rnd(1, max_chunk) : 1;
    q.kv_len = int(q.pages.size()) * page_size + own_history + q.q_len;
    while (int(q.pages.size()) * page_size < q.kv_len) q.pages.push_back(sc.num_pages++);
    sc.reqs.push_back(std::move(q));
  }
  std::vector<int32_t> perm(size_t(sc.num_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (CascadeRequest& q : sc.reqs)
    for (int32_t& p : q.pages) p = perm[size_t(p)];
  std::shuffle(sc.reqs.begin(), sc.reqs.end(), rng);
  return sc;
}

}  // namespace nc::testing
