#include "kv/page_pool.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <mutex>

#include "core/error.h"

namespace nc {

PagePool::PagePool(int num_pages) {
  NC_CHECK(num_pages > 0, "page pool: need at least one page, got {}", num_pages);
  refcount_.assign(num_pages, 0);
  cache_held_.assign(num_pages, 0);
  on_free_list_.assign(num_pages, 1);
  free_list_.resize(num_pages);
  // Highest id at the bottom of the stack, so allocation hands out 0, 1, 2, ... first.
  for (int i = 0; i < num_pages; ++i) free_list_[i] = num_pages - 1 - i;
}

void PagePool::check_id(int32_t page, const char* what) const {
  NC_CHECK(page >= 0 && page < num_pages(), "page pool: {} of page {} outside [0, {})", what, page,
           num_pages());
}

int32_t PagePool::allocate() {
  if (free_list_.empty() && evictor_ && num_cached_ > 0) evictor_(1);
  if (free_list_.empty()) return -1;
  const int32_t p = free_list_.back();
  free_list_.pop_back();
  on_free_list_[p] = 0;
  refcount_[p] = 1;
  ++num_used_;
  ++counters_.allocated;
  return p;
}

bool PagePool::allocate(int n, std::vector<int32_t>& out) {
  NC_CHECK(n >= 0, "page pool: cannot allocate {} pages", n);
  if (num_free() < n && evictor_ && num_cached_ > 0) evictor_(n - num_free());
  if (num_free() < n) return false;
  for (int i = 0; i < n; ++i) out.push_back(allocate());
  return true;
}

bool PagePool::restore(int n, std::vector<int32_t>& out) {
  NC_CHECK(n >= 0, "page pool: cannot restore {} pages", n);
  if (num_free() < n && evictor_ && num_cached_ > 0) evictor_(n - num_free());
  if (num_free() < n) return false;
  for (int i = 0; i < n; ++i) {
    const int32_t p = free_list_.back();
    free_list_.pop_back();
    on_free_list_[p] = 0;
    cache_held_[p] = 1;
    ++num_cached_;
    ++counters_.restored;
    out.push_back(p);
  }
  return true;
}

void PagePool::inc_ref(int32_t page) {
  check_id(page, "inc_ref");
  NC_CHECK(!on_free_list_[page], "page pool: inc_ref of free page {}", page);
  if (refcount_[page] == 0) {  // Cached -> Used
    --num_cached_;
    ++num_used_;
    ++counters_.reloaded;
  }
  ++refcount_[page];
}

void PagePool::dec_ref(int32_t page) {
  check_id(page, "dec_ref");
  NC_CHECK(refcount_[page] > 0, "page pool: dec_ref of page {} with refcount 0", page);
  if (--refcount_[page] > 0) return;
  --num_used_;
  if (cache_held_[page]) {
    ++num_cached_;
    ++counters_.cached;
  } else {
    on_free_list_[page] = 1;
    free_list_.push_back(page);
    ++counters_.freed;
  }
}

void PagePool::dec_ref_all(const std::vector<int32_t>& pages) {
  for (int32_t p : pages) dec_ref(p);
}

void PagePool::set_cached(int32_t page) {
  check_id(page, "set_cached");
  NC_CHECK(refcount_[page] > 0, "page pool: only a used page can enter the cache (page {})", page);
  cache_held_[page] = 1;
}

void PagePool::uncache(int32_t page) {
  check_id(page, "uncache");
  NC_CHECK(cache_held_[page], "page pool: page {} is not held by the cache", page);
  cache_held_[page] = 0;
  if (refcount_[page] == 0) {
    --num_cached_;
    on_free_list_[page] = 1;
    free_list_.push_back(page);
    ++counters_.evicted;
  }
}

int PagePool::refcount(int32_t page) const {
  check_id(page, "refcount");
  return refcount_[page];
}

bool PagePool::held_by_cache(int32_t page) const {
  check_id(page, "held_by_cache");
  return cache_held_[page];
}

PageState PagePool::state(int32_t page) const {
  check_id(page, "state");
  if (refcount_[page] > 0) return PageState::Used;
  return cache_held_[page] ? PageState::Cached : PageState::Free;
}

void PagePool::check_invariants() const {
  const int n = num_pages();
  NC_CHECK(num_free() + num_used_ + num_cached_ == n,
           "page pool: free {} + used {} + cached {} != total {}", num_free(), num_used_,
           num_cached_, n);
  int used = 0, cached = 0, listed = 0;
  for (int p = 0; p < n; ++p) {
    NC_CHECK(refcount_[p] >= 0, "page pool: page {} has refcount {}", p, refcount_[p]);
    if (on_free_list_[p]) {
      ++listed;
      NC_CHECK(refcount_[p] == 0 && !cache_held_[p],
               "page pool: page {} is on the free list with refcount {} (cache-held {})", p,
               refcount_[p], int(cache_held_[p]));
    } else if (refcount_[p] > 0) {
      ++used;
    } else {
      NC_CHECK(cache_held_[p], "page pool: page {} is neither free, used nor cached (leaked)", p);
      ++cached;
    }
  }
  NC_CHECK(listed == num_free(), "page pool: {} pages marked free but {} on the free list", listed,
           num_free());
  NC_CHECK(used == num_used_ && cached == num_cached_,
           "page pool: counted {} used / {} cached pages, counters say {} / {}", used, cached,
           num_used_, num_cached_);
  // Every state change is counted: from all-free, the counters give the counts back exactly.
  const PagePoolCounters& c = counters_;
  NC_CHECK(num_free() == n - c.allocated + c.freed + c.evicted - c.restored &&
               num_used_ == c.allocated - c.freed - c.cached + c.reloaded &&
               num_cached_ == c.cached - c.evicted - c.reloaded + c.restored,
           "page pool: transitions (allocated {}, freed {}, cached {}, evicted {}, reloaded {}, "
           "restored {}) do not reconcile with free {} / used {} / cached {}",
           c.allocated, c.freed, c.cached, c.evicted, c.reloaded, c.restored, num_free(), num_used_,
           num_cached_);
  std::vector<uint8_t> seen(n, 0);
  for (int32_t p : free_list_) {
    NC_CHECK(p >= 0 && p < n && !seen[p],
             "page pool: free list holds page {} twice or out of range", p);
    seen[p] = 1;
  }
}

// ---- Memory budgets ----

int64_t MemoryBudget::resolve(int64_t free_device_bytes) const {
  if (!is_fraction) return bytes;
  return int64_t(double(free_device_bytes) * fraction);
}

MemoryBudget parse_memory_budget(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(uint8_t(text[i])) || text[i] == '.')) ++i;
  const std::string number = text.substr(0, i);
  std::string unit;
  for (size_t j = i; j < text.size(); ++j) {
    if (!std::isspace(uint8_t(text[j]))) unit += char(std::tolower(uint8_t(text[j])));
  }
  double value = 0;
  try {
    size_t used = 0;
    value = std::stod(number, &used);
    NC_CHECK(used == number.size(), "");
  } catch (const std::exception&) {
    fail(
        "kv cache memory '{}': expected bytes (\"2GiB\", \"512MB\", \"1000000\") or a fraction "
        "of free memory (\"0.9\")",
        text);
  }
  MemoryBudget b;
  if (unit.empty() && number.find('.') != std::string::npos) {
    NC_CHECK(value > 0 && value <= 1,
             "kv cache memory '{}': a fraction of free memory must be in (0, 1]", text);
    b.is_fraction = true;
    b.fraction = value;
    return b;
  }
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},          {"b", 1},
      {"k", 1e3},       {"kb", 1e3},
      {"kib", 1024.0},  {"m", 1e6},
      {"mb", 1e6},      {"mib", 1 << 20},
      {"g", 1e9},       {"gb", 1e9},
      {"gib", 1 << 30}, {"t", 1e12},
      {"tb", 1e12},     {"tib", 1099511627776.0}};
  double scale = -1;
  for (const auto& [name, s] : kUnits) {
    if (unit == name) scale = s;
  }
  NC_CHECK(scale > 0, "kv cache memory '{}': unknown unit '{}' (use B, KB, KiB, MB, MiB, GB, GiB)",
           text, unit);
  const double bytes = value * scale;
  NC_CHECK(bytes >= 1 && bytes < 9e18, "kv cache memory '{}': must be a positive size", text);
  b.bytes = int64_t(bytes);
  return b;
}

int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  NC_CHECK(pages > 0 && page > 0, "cannot query the physical memory of this machine");
  return int64_t(pages) * page;
}

int pages_for_budget(int64_t budget_bytes, int64_t bytes_per_page) {
  NC_CHECK(bytes_per_page > 0, "kv cache: bytes per page must be positive");
  const int64_t n = budget_bytes / bytes_per_page;
  NC_CHECK(n >= 1, "kv cache memory of {} bytes holds no page ({} bytes each)", budget_bytes,
           bytes_per_page);
  return int(std::min<int64_t>(n, std::numeric_limits<int32_t>::max()));
}

}  // namespace nc
