// PagePool: the KV cache's pages, handed out by id. A free list gives O(1) allocate/free; each
// page has a refcount. A page is in one of three states:
//   Free    on the free list, refcount 0;
//   Used    refcount > 0 (referenced by live requests, possibly also held by the prefix cache);
//   Cached  refcount 0 but held by the prefix cache: its contents stay valid and a new request
//           may take a reference again (inc_ref), or the cache may give it back (uncache).
// When the free list runs dry, allocate() asks the evictor (the prefix cache) to give back
// cached pages before it fails. Without a prefix cache no page is ever Cached. With the prefix
// cache's host tier (kv/host_tier.h), restore() takes free pages straight into Cached: their K/V
// is copied back from the host before anything reads them.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace nc {

enum class PageState : uint8_t { Free, Used, Cached };

// Page state transitions since the pool was made (nanocascade/memory_hooks.h names them).
struct PagePoolCounters {
  int64_t allocated = 0;  // Free -> Used
  int64_t freed = 0;      // Used -> Free
  int64_t cached = 0;     // Used -> Cached
  int64_t evicted = 0;    // Cached -> Free
  int64_t reloaded = 0;   // Cached -> Used
  int64_t restored = 0;   // Free -> Cached (K/V copied back from the host tier)
};

struct PagePoolStats {
  int total = 0;
  int free = 0;
  int used = 0;
  int cached = 0;
};

class PagePool {
 public:
  // Called when allocation needs `needed` more pages than are free; it should uncache() some
  // cached pages and return how many it released.
  using Evictor = std::function<int(int needed)>;

  explicit PagePool(int num_pages);

  int num_pages() const { return int(refcount_.size()); }
  int num_free() const { return int(free_list_.size()); }
  int num_used() const { return num_used_; }
  int num_cached() const { return num_cached_; }
  // Pages an allocation may obtain: free ones plus cached ones the evictor could release.
  int num_available() const { return num_free() + (evictor_ ? num_cached_ : 0); }
  PagePoolStats stats() const { return {num_pages(), num_free(), num_used_, num_cached_}; }
  const PagePoolCounters& counters() const { return counters_; }

  // One page with refcount 1, or -1 when none is free even after eviction.
  int32_t allocate();
  // `n` pages appended to `out`, all or nothing; false (and `out` unchanged) when short.
  bool allocate(int n, std::vector<int32_t>& out);

  // A new reference to a Used or Cached page (a Cached page becomes Used).
  void inc_ref(int32_t page);
  // Drops a reference; at 0 the page becomes Cached when the cache holds it, else Free.
  void dec_ref(int32_t page);
  void dec_ref_all(const std::vector<int32_t>& pages);

  // Prefix-cache hooks: mark a page as held by the cache (it must be Used), or release the
  // cache's hold (a Cached page then returns to the free list).
  void set_cached(int32_t page);
  void uncache(int32_t page);
  void set_evictor(Evictor evictor) { evictor_ = std::move(evictor); }
  // `n` free pages (evicting first if needed) straight into Cached (cache-held, refcount 0),
  // appended to `out`, all or nothing; false (and `out` unchanged) when short.
  bool restore(int n, std::vector<int32_t>& out);

  int refcount(int32_t page) const;
  bool held_by_cache(int32_t page) const;
  PageState state(int32_t page) const;

  // Throws nc::Error when the accounting is inconsistent: free + used + cached != total, a page
  // on the free list twice or with a reference, counters that disagree with the pages.
  void check_invariants() const;

 private:
  void check_id(int32_t page, const char* what) const;

  std::vector<int32_t> refcount_;
  std::vector<uint8_t> cache_held_;
  std::vector<uint8_t> on_free_list_;
  std::vector<int32_t> free_list_;  // a stack: the last freed page is reused first
  int num_used_ = 0;
  int num_cached_ = 0;
  PagePoolCounters counters_;
  Evictor evictor_;
};

// A KV-cache memory budget: absolute bytes, or a fraction of the memory free on the device
// (physical memory on CPU).
struct MemoryBudget {
  bool is_fraction = false;
  double fraction = 0.0;
  int64_t bytes = 0;

  // Bytes to use given the device's free memory.
  int64_t resolve(int64_t free_device_bytes) const;
};

// Parses "2GiB", "512MB", "1.5G", "1048576" (bytes) or "0.9" (a fraction in (0, 1]). Units: B,
// K/KB (1000), KiB (1024), M/MB, MiB, G/GB, GiB, T/TB, TiB; case-insensitive. Throws nc::Error.
MemoryBudget parse_memory_budget(const std::string& text);

// Physical memory of this machine in bytes.
int64_t physical_memory_bytes();

// Pages that fit in the budget: budget_bytes / bytes_per_page. Throws when that is 0.
int pages_for_budget(int64_t budget_bytes, int64_t bytes_per_page);

}  // namespace nc
