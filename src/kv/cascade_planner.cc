#include "kv/cascade_planner.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "core/error.h"

namespace nc {

double CascadeCostModel::saved_us(int sharers, int rows, int64_t tokens, bool in_l2) const {
  const double bytes = double(tokens) * kv_bytes_per_token;
  const double read_once = bytes / bandwidth_bytes_per_us;
  const double plain_reads =
      in_l2 ? read_once : double(sharers) * bytes / reread_bandwidth_bytes_per_us;
  const double compute = double(rows) * double(tokens) * flops_per_row_token / flops_per_us;
  return std::max(plain_reads, compute) - std::max(read_once, compute);
}

bool CascadeCostModel::fits_l2(int64_t shared_tokens) const {
  return double(shared_tokens) * kv_bytes_per_token <= l2_resident_bytes;
}

double CascadeCostModel::level_cost_us(int num_step_rows) const {
  return level_overhead_us + double(num_step_rows) * extra_bytes_per_row / bandwidth_bytes_per_us;
}

std::string to_string(CascadeMode mode) {
  switch (mode) {
    case CascadeMode::Off:
      return "off";
    case CascadeMode::Auto:
      return "auto";
    case CascadeMode::Always:
      return "always";
  }
  return "?";
}

namespace {

// A node of the step's sharing trie: pages [offset, offset + num_pages) of each member, which
// all members hold under the same ids. Only nodes with two or more members exist.
struct TrieNode {
  int parent = -1;
  int offset = 0;
  int num_pages = 0;
  std::vector<int> members;  // input indices
  bool kept = false;
  int level = -1;  // among kept nodes; -1 when folded
  // Kept: where its level's entry starts, the end of its nearest kept ancestor (0 for none). A
  // folded ancestor's pages go into the entries of its kept descendants (read once a group, not
  // once a request), so that every request's levels stay consecutive stretches of its sequence
  // (kv/sliding_window.h places a row's keys by that).
  int span_start = 0;
};

class TrieBuilder {
 public:
  TrieBuilder(const std::vector<CascadeRequest>& reqs, const std::vector<int>& shareable)
      : reqs_(reqs), shareable_(shareable) {}

  // Builds the nodes below a group of requests that agree on pages [0, offset), and appends the
  // group's requests to `order` depth-first (items ordered by their smallest input index).
  void build(const std::vector<int>& members, int offset, int parent) {
    // Buckets by the page at `offset`, in order of first appearance (members are sorted).
    std::vector<std::vector<int>> items;
    std::unordered_map<int32_t, int> bucket_of;
    for (int r : members) {
      if (shareable_[r] > offset) {
        auto [it, fresh] = bucket_of.try_emplace(reqs_[r].pages[offset], int(items.size()));
        if (fresh) items.emplace_back();
        items[it->second].push_back(r);
      } else {
        items.push_back({r});
      }
    }
    std::sort(items.begin(), items.end(),
              [](const std::vector<int>& a, const std::vector<int>& b) { return a[0] < b[0]; });
    for (const std::vector<int>& item : items) {
      if (item.size() == 1) {
        order.push_back(item[0]);
        continue;
      }
      int len = 1;
      while (std::all_of(item.begin(), item.end(), [&](int r) {
        return shareable_[r] > offset + len &&
               reqs_[r].pages[offset + len] == reqs_[item[0]].pages[offset + len];
      })) {
        ++len;
      }
      const int id = int(nodes.size());
      nodes.push_back({parent, offset, len, item});
      build(item, offset + len, id);
    }
  }

  std::vector<TrieNode> nodes;
  std::vector<int> order;

 private:
  const std::vector<CascadeRequest>& reqs_;
  const std::vector<int>& shareable_;
};

void validate(const std::vector<CascadeRequest>& reqs, int ps) {
  int32_t max_page = -1;
  for (int r = 0; r < int(reqs.size()); ++r) {
    const CascadeRequest& q = reqs[r];
    NC_CHECK(q.q_len >= 1 && q.kv_len >= q.q_len,
             "cascade planner: request {} has q_len {} and kv_len {}", r, q.q_len, q.kv_len);
    NC_CHECK(int64_t(q.pages.size()) == (int64_t(q.kv_len) + ps - 1) / ps,
             "cascade planner: request {} has {} pages for {} tokens at page size {}", r,
             q.pages.size(), q.kv_len, ps);
    for (int32_t p : q.pages) {
      NC_CHECK(p >= 0, "cascade planner: request {} holds page {}", r, p);
      max_page = std::max(max_page, p);
    }
  }
  // Page ids are dense (a pool's indices), so a flat table of first holders is far cheaper than
  // a hash map: this runs every step over every page of the batch.
  struct Holder {
    int32_t request = -1, position = -1;
  };
  // Kept between calls (per thread) so a step does not fault in a fresh table; reset below.
  thread_local std::vector<Holder> first;
  if (first.size() < size_t(max_page) + 1) first.resize(size_t(max_page) + 1);
  struct Reset {
    const std::vector<CascadeRequest>& reqs;
    ~Reset() {
      for (const CascadeRequest& q : reqs)
        for (int32_t p : q.pages) first[size_t(p)] = Holder{};
    }
  } reset{reqs};
  // Per request: its first page holding a new token (one division each, not one per page).
  std::vector<int> first_written(reqs.size());
  for (size_t r = 0; r < reqs.size(); ++r) first_written[r] = (reqs[r].kv_len - reqs[r].q_len) / ps;
  for (int r = 0; r < int(reqs.size()); ++r) {
    const CascadeRequest& q = reqs[r];
    for (int i = 0; i < int(q.pages.size()); ++i) {
      Holder& h = first[size_t(q.pages[i])];
      if (h.request < 0) {
        h = {r, i};
        continue;
      }
      const auto [r0, i0] = h;
      NC_CHECK(r0 != r, "cascade planner: request {} holds page {} twice", r, q.pages[i]);
      NC_CHECK(i == i0 && i < first_written[r] && i0 < first_written[r0],
               "cascade planner: page {} is shared by requests {} (position {}) and {} (position "
               "{}) but is not a common read-only prefix page",
               q.pages[i], r0, i0, r, i);
    }
  }
}

// Levels of kept nodes: a kept node's level is the number of its kept ancestors; its entry
// starts where the nearest of them ends.
int assign_levels(std::vector<TrieNode>& nodes) {
  int num_levels = 0;
  for (TrieNode& n : nodes) {  // parents come before children
    n.level = -1;
    if (!n.kept) continue;
    int above = 0;
    n.span_start = -1;
    for (int p = n.parent; p >= 0; p = nodes[p].parent) {
      if (!nodes[p].kept) continue;
      ++above;
      if (n.span_start < 0) n.span_start = nodes[p].offset + nodes[p].num_pages;
    }
    if (n.span_start < 0) n.span_start = 0;
    n.level = above;
    num_levels = std::max(num_levels, above + 1);
  }
  return num_levels;
}

// Folds levels that do not pay for themselves (worst net gain first), and the deepest ones
// beyond max_shared_levels.
void choose_levels(std::vector<TrieNode>& nodes, const std::vector<CascadeRequest>& reqs,
                   const CascadeCostModel& cost, int ps, int num_rows) {
  for (TrieNode& n : nodes) n.kept = true;
  // Plain attention re-reads a shared page from L2 only while the step's shared prefixes fit
  // there together: sharers of one node run at about the same time, but so do other groups.
  int64_t shared_tokens = 0;
  for (const TrieNode& n : nodes) shared_tokens += int64_t(n.num_pages) * ps;
  const bool in_l2 = cost.fits_l2(shared_tokens);
  for (;;) {
    const int num_levels = assign_levels(nodes);
    if (num_levels == 0) return;
    std::vector<double> net(num_levels, -cost.level_cost_us(num_rows));
    for (const TrieNode& n : nodes) {
      if (!n.kept) continue;
      int rows = 0;
      for (int m : n.members) rows += reqs[m].q_len;
      net[n.level] += cost.saved_us(int(n.members.size()), rows, int64_t(n.num_pages) * ps, in_l2);
    }
    const int worst = int(std::min_element(net.begin(), net.end()) - net.begin());
    if (net[worst] >= 0 && num_levels <= cost.max_shared_levels) return;
    for (TrieNode& n : nodes)
      if (n.kept && n.level == worst) n.kept = false;
  }
}

// The last level: per request (in `order`), every page no shared level reads (in_shared
// empty: none is shared), causal.
PagedKVBatch own_level(const std::vector<CascadeRequest>& reqs, const std::vector<int>& order,
                       const std::vector<uint8_t>& in_shared, const std::vector<size_t>& page_base,
                       int ps) {
  PagedKVBatch own;
  own.causal = true;
  const size_t n = reqs.size();
  own.qo_indptr.reserve(n + 1);
  own.kv_indptr.reserve(n + 1);
  own.kv_last_page_len.reserve(n);
  own.kv_indices.reserve(page_base[n]);
  std::vector<int32_t> pages;
  for (int r : order) {
    const CascadeRequest& q = reqs[r];
    if (in_shared.empty()) {
      own.add(q.q_len, q.pages, q.kv_len, ps);
      continue;
    }
    pages.clear();
    for (size_t p = 0; p < q.pages.size(); ++p)
      if (!in_shared[page_base[r] + p]) pages.push_back(q.pages[p]);
    const int skipped = int(q.pages.size() - pages.size());
    own.add(q.q_len, pages, q.kv_len - skipped * ps, ps);
  }
  return own;
}

}  // namespace

CascadePlanner::CascadePlanner(int page_size, CascadeMode mode, CascadeCostModel cost)
    : page_size_(page_size), mode_(mode), cost_(cost) {
  NC_CHECK(page_size >= 1, "cascade planner: page size {} < 1", page_size);
  NC_CHECK(cost.bandwidth_bytes_per_us > 0 && cost.reread_bandwidth_bytes_per_us > 0 &&
               cost.l2_resident_bytes >= 0 && cost.flops_per_us > 0 &&
               cost.flops_per_row_token >= 0 && cost.kv_bytes_per_token >= 0 &&
               cost.extra_bytes_per_row >= 0 && cost.level_overhead_us >= 0 &&
               cost.max_shared_levels >= 0 && cost.num_layers >= 1,
           "cascade planner: invalid cost model");
}

CascadePlan CascadePlanner::plan(const std::vector<CascadeRequest>& reqs) const {
  const int ps = page_size_, n = int(reqs.size());
  validate(reqs, ps);
  std::vector<int> shareable(n);
  int num_rows = 0;
  for (int r = 0; r < n; ++r) {
    const CascadeRequest& q = reqs[r];
    shareable[r] = (q.kv_len - q.q_len) / ps;
    if (q.max_shared_pages >= 0) shareable[r] = std::min(shareable[r], q.max_shared_pages);
    num_rows += q.q_len;
  }

  std::vector<int> all(n);
  for (int r = 0; r < n; ++r) all[r] = r;
  TrieBuilder trie(reqs, shareable);
  std::vector<TrieNode>& nodes = trie.nodes;
  if (mode_ == CascadeMode::Off) {
    trie.order = all;
  } else {
    trie.build(all, 0, -1);
  }
  if (mode_ == CascadeMode::Always) {
    for (TrieNode& t : nodes) t.kept = true;
  } else if (mode_ == CascadeMode::Auto) {
    choose_levels(nodes, reqs, cost_, ps, num_rows);
  }
  const int num_shared_levels = assign_levels(nodes);

  // For each request: its kept node at each level, and which of its pages those cover.
  std::vector<int> node_at(size_t(n) * num_shared_levels, -1);
  std::vector<size_t> page_base(n + 1, 0);  // request r's pages in `in_shared` start here
  for (int r = 0; r < n; ++r) page_base[r + 1] = page_base[r] + reqs[r].pages.size();
  std::vector<uint8_t> in_shared(num_shared_levels ? page_base[n] : 0, 0);
  for (int i = 0; i < int(nodes.size()); ++i) {
    const TrieNode& t = nodes[i];
    if (!t.kept) continue;
    for (int r : t.members) {
      node_at[size_t(r) * num_shared_levels + t.level] = i;
      std::fill_n(in_shared.begin() + std::ptrdiff_t(page_base[r] + t.span_start),
                  t.offset + t.num_pages - t.span_start, 1);
    }
  }

  CascadePlan out;
  out.order = std::move(trie.order);
  out.step.num_tokens = num_rows;
  const double bytes_per_token = cost_.kv_bytes_per_token * cost_.num_layers;
  for (int l = 0; l < num_shared_levels; ++l) {
    PagedKVBatch level;
    level.causal = false;
    for (int i = 0; i < n;) {
      const int r = out.order[i];
      const int id = node_at[size_t(r) * num_shared_levels + l];
      if (id < 0) {
        level.add_pages(reqs[r].q_len, {}, 0, ps);
        ++i;
        continue;
      }
      const TrieNode& t = nodes[id];
      int q = 0;
      for (int m : t.members) q += reqs[m].q_len;
      const int span = t.offset + t.num_pages - t.span_start;
      const std::span<const int32_t> pages(reqs[r].pages.data() + t.span_start, size_t(span));
      level.add_pages(q, pages, span * ps, ps);
      i += int(t.members.size());  // members are contiguous in the order
    }
    out.stats.pages_per_level.push_back(int(level.kv_indices.size()));
    out.step.levels.push_back(std::move(level));
  }
  out.step.levels.push_back(own_level(reqs, out.order, in_shared, page_base, ps));
  out.stats.pages_per_level.push_back(int(out.step.levels.back().kv_indices.size()));
  for (const CascadeRequest& q : reqs)
    out.stats.kv_bytes_plain += double(q.kv_len) * bytes_per_token;

  for (const PagedKVBatch& level : out.step.levels)
    for (int b = 0; b < level.batch_size(); ++b)
      out.stats.kv_bytes_cascade += double(level.kv_len(b, ps)) * bytes_per_token;
  out.stats.num_levels = int(out.step.levels.size());
  out.stats.num_shared_nodes = int(nodes.size());
  for (const TrieNode& t : nodes) out.stats.num_kept_nodes += t.kept;
  return out;
}

}  // namespace nc
