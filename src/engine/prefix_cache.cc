#include "engine/prefix_cache.h"

#include <algorithm>

#include "core/error.h"

namespace nc {

namespace {

// The tokens a share-limited request (Sequence::share_limit: a streaming request) offers a
// match: its first share_limit tokens and one more, so that up to share_limit tokens may match.
std::vector<int32_t> limited_tokens(const Sequence& seq) {
  const int n = std::min(seq.num_tokens(), seq.share_limit + 1);
  return {seq.tokens.begin(), seq.tokens.begin() + n};
}

}  // namespace

int TreePrefixCache::match(Sequence& seq) {
  NC_CHECK(seq.pages.empty() && seq.kv_len() == 0,
           "prefix cache: request {} already holds {} pages", seq.id, seq.pages.size());
  PrefixMatch m = seq.share_limit >= 0 ? tree_.match(limited_tokens(seq), seq.session)
                                       : tree_.match(seq.tokens, seq.session);
  seq.pages = std::move(m.pages);
  return m.num_tokens;
}

int TreePrefixCache::peek(const Sequence& seq) const {
  return seq.share_limit >= 0 ? tree_.peek(limited_tokens(seq)) : tree_.peek(seq.tokens);
}

void TreePrefixCache::insert(Sequence& seq) {
  // Only computed tokens have K/V; the last sampled token never does.
  // A placeholder (a token still being sampled) is never computed, so never cached.
  NC_CHECK(seq.num_known() >= seq.num_computed,
           "prefix cache: request {} would cache a token that is still being sampled", seq.id);
  if (seq.share_limit >= 0) {
    // A streaming request gives only its sink pages (never shifted; positions are indices
    // there); the tree may swap them for its own copies, so they go back into seq.pages.
    const int n = std::min(seq.kv_len(), seq.share_limit);
    const std::vector<int32_t> tokens(seq.tokens.begin(), seq.tokens.begin() + n);
    const size_t k = std::min(seq.pages.size(), size_t(n / tree_.page_size()));
    std::vector<int32_t> pages(seq.pages.begin(), seq.pages.begin() + std::ptrdiff_t(k));
    tree_.insert(tokens, pages, seq.session);
    std::copy(pages.begin(), pages.end(), seq.pages.begin());
    return;
  }
  NC_CHECK(seq.num_evicted == 0, "prefix cache: request {} evicted tokens but shares its pages",
           seq.id);
  const std::vector<int32_t> computed(seq.tokens.begin(), seq.tokens.begin() + seq.num_computed);
  tree_.insert(computed, seq.pages, seq.session);
}

bool HostReloadRule::worth(int pages) const {
  const double bytes_per_s = cuda ? 20e9 : 5e9;
  const double latency_s = cuda ? 10e-6 : 0.0;
  const double flops_per_s = cuda ? 200e12 : 50e9;
  const double copy_s = double(pages) * double(page_bytes) / bytes_per_s + latency_s;
  const double recompute_s = double(pages) * page_size * flops_per_token / flops_per_s;
  return copy_s < recompute_s;
}

CascadeStats apply_cascade(StepPlan& plan, const CascadePlanner& planner) {
  const size_t n = plan.entries.size();
  std::vector<CascadeRequest> reqs(n);
  std::vector<int> first_row(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    const StepEntry& e = plan.entries[i];
    reqs[i] = CascadeRequest{e.num_new, e.start + e.num_new, e.seq->pages, -1};
    first_row[i + 1] = first_row[i] + e.num_new;
  }
  CascadePlan cp = planner.plan(reqs);
  // No shared level: the step's plain attention, in its own order, is already that plan.
  if (cp.stats.num_levels == 1) return cp.stats;
  ForwardInput& in = plan.input;
  NC_CHECK(first_row[n] == int(in.token_ids.size()), "cascade: plan has {} rows, entries {}",
           in.token_ids.size(), first_row[n]);
  std::vector<StepEntry> entries;
  std::vector<int32_t> ids, positions, logit_rows;
  std::vector<int> sample_entries;
  for (int old : cp.order) {
    const StepEntry& e = plan.entries[old];
    ids.insert(ids.end(), in.token_ids.begin() + first_row[old],
               in.token_ids.begin() + first_row[old + 1]);
    positions.insert(positions.end(), in.positions.begin() + first_row[old],
                     in.positions.begin() + first_row[old + 1]);
    if (e.sample) {
      logit_rows.push_back(int32_t(ids.size()) - 1);
      sample_entries.push_back(int(entries.size()));
    }
    entries.push_back(e);
  }
  plan.entries = std::move(entries);
  plan.sample_entries = std::move(sample_entries);
  in.token_ids = std::move(ids);
  in.positions = std::move(positions);
  in.logit_rows = std::move(logit_rows);
  in.attention = std::move(cp.step);
  return cp.stats;
}

PageUsage page_usage(const PagePool& pool) {
  PageUsage u;
  for (int p = 0; p < pool.num_pages(); ++p) {
    const int rc = pool.refcount(p);
    if (rc >= 2) {
      ++u.shared_used;
    } else if (rc == 1) {
      ++u.private_used;
    } else if (pool.held_by_cache(p)) {
      ++u.cached_only;
    } else {
      ++u.free;
    }
  }
  return u;
}

HostTierStats host_tier_stats(const HostTier& host, const PrefixTreeStats& tree) {
  HostTierStats s;
  s.capacity_pages = host.num_pages();
  s.used_pages = host.num_held();
  s.hit_tokens = tree.host_hit_tokens;
  s.declined_tokens = tree.host_declined_tokens;
  const HostTierCounters& c = host.counters();
  s.offloaded_pages = c.offloaded;
  s.reloaded_pages = c.restored;
  s.dropped_pages = c.dropped;
  s.bytes_to_host = c.bytes_to_host;
  s.bytes_to_device = c.bytes_to_device;
  return s;
}

}  // namespace nc
