#include "kv/host_tier.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace nc {

HostTier::HostTier(int num_pages, int64_t page_bytes) : page_bytes_(page_bytes) {
  NC_CHECK(num_pages > 0, "host kv tier: need at least one page, got {}", num_pages);
  NC_CHECK(page_bytes > 0, "host kv tier: page bytes must be positive, got {}", page_bytes);
  held_.assign(num_pages, 0);
  free_list_.resize(num_pages);
  for (int i = 0; i < num_pages; ++i) free_list_[i] = num_pages - 1 - i;
}

void HostTier::check_id(int32_t page, const char* what) const {
  NC_CHECK(page >= 0 && page < num_pages(), "host kv tier: {} of page {} outside [0, {})", what,
           page, num_pages());
}

int32_t HostTier::offload(int32_t device_page) {
  if (free_list_.empty()) return -1;
  const int32_t h = free_list_.back();
  free_list_.pop_back();
  held_[h] = 1;
  queue_.push_back({device_page, h, true});
  ++counters_.offloaded;
  counters_.bytes_to_host += page_bytes_;
  return h;
}

void HostTier::restore(int32_t host_page, int32_t device_page) {
  check_id(host_page, "restore");
  NC_CHECK(held_[host_page], "host kv tier: restore of free page {}", host_page);
  held_[host_page] = 0;
  free_list_.push_back(host_page);
  queue_.push_back({device_page, host_page, false});
  ++counters_.restored;
  counters_.bytes_to_device += page_bytes_;
}

void HostTier::drop(int32_t host_page) {
  check_id(host_page, "drop");
  NC_CHECK(held_[host_page], "host kv tier: drop of free page {}", host_page);
  held_[host_page] = 0;
  free_list_.push_back(host_page);
  ++counters_.dropped;
}

bool HostTier::held(int32_t host_page) const {
  check_id(host_page, "held");
  return held_[host_page];
}

std::vector<KVPageCopy> HostTier::take_copies() {
  std::vector<KVPageCopy> out;
  out.swap(queue_);
  return out;
}

void HostTier::check_invariants() const {
  const int n = num_pages();
  std::vector<uint8_t> listed(n, 0);
  for (int32_t p : free_list_) {
    NC_CHECK(p >= 0 && p < n && !listed[p], "host kv tier: free list holds page {} twice", p);
    NC_CHECK(!held_[p], "host kv tier: page {} is on the free list while held", p);
    listed[p] = 1;
  }
  const int held = int(std::count(held_.begin(), held_.end(), uint8_t(1)));
  NC_CHECK(held + num_free() == n, "host kv tier: held {} + free {} != total {}", held, num_free(),
           n);
  const HostTierCounters& c = counters_;
  NC_CHECK(held == c.offloaded - c.restored - c.dropped,
           "host kv tier: transitions (offloaded {}, restored {}, dropped {}) do not reconcile "
           "with {} held pages",
           c.offloaded, c.restored, c.dropped, held);
}

int host_tier_pages(int64_t bytes, int64_t page_bytes, int64_t physical_bytes) {
  if (bytes <= 0) return 0;
  NC_CHECK(bytes <= physical_bytes,
           "host kv cache of {} bytes ({:.1f} GiB) exceeds this machine's physical memory of {} "
           "bytes ({:.1f} GiB)",
           bytes, double(bytes) / double(1 << 30), physical_bytes,
           double(physical_bytes) / double(1 << 30));
  NC_CHECK(page_bytes > 0, "host kv cache: bytes per page must be positive");
  const int64_t n = bytes / page_bytes;
  NC_CHECK(n >= 1, "host kv cache of {} bytes holds no page ({} bytes each)", bytes, page_bytes);
  return int(std::min<int64_t>(n, std::numeric_limits<int32_t>::max()));
}

}  // namespace nc
