// HostTier: the second tier of the prefix cache, pages of K/V kept in host memory.
//
// When the prefix tree evicts a cached device page and a host tier exists, the page's K/V is
// copied to a host page instead of being dropped; a later prefix hit on it copies it back into a
// fresh device page before the request's prefill reads it. This class holds the host pages' ids
// and states and the queue of copies; the bytes live with the model (StepModel::allocate_host_kv:
// pinned memory on CUDA, plain memory on the CPU), which runs the queued copies in order, once per
// step, before the step's forward pass (StepModel::transfer_kv).
//
// A host page is Free or Held (it holds the K/V of one host-resident prefix-tree page). Three
// counted transitions change that, and nothing else does:
//   offloaded  Free -> Held   a device page's K/V copied to it (the device page: Cached -> Free)
//   restored   Held -> Free   its K/V copied back into a device page (PagePool::restore)
//   dropped    Held -> Free   its K/V discarded (LRU, when the tier is full)
// so from an all-free tier: held = offloaded - restored - dropped.
//
// Copies are queued in the order the tree decides them and must run in that order: a host page
// restored and offloaded again in one step, or a device page offloaded and then restored into,
// is correct only in queue order.
#pragma once
#include <cstdint>
#include <vector>

namespace nc {

// One page copy between the device KV cache (all layers) and host page `host_page`.
struct KVPageCopy {
  int32_t device_page = 0;
  int32_t host_page = 0;
  bool to_host = true;  // device -> host (offload); false: host -> device (restore)
};

struct HostTierCounters {
  int64_t offloaded = 0;  // Free -> Held
  int64_t restored = 0;   // Held -> Free, copied back to the device
  int64_t dropped = 0;    // Held -> Free, discarded
  int64_t bytes_to_host = 0;
  int64_t bytes_to_device = 0;
};

class HostTier {
 public:
  // num_pages host pages of page_bytes bytes each (the device page's bytes, all layers).
  HostTier(int num_pages, int64_t page_bytes);

  int num_pages() const { return int(held_.size()); }
  int num_free() const { return int(free_list_.size()); }
  int num_held() const { return num_pages() - num_free(); }
  int64_t page_bytes() const { return page_bytes_; }
  const HostTierCounters& counters() const { return counters_; }

  // Free -> Held with a queued copy from `device_page`; -1 (nothing queued) when none is free.
  int32_t offload(int32_t device_page);
  // Held -> Free with a queued copy to `device_page`.
  void restore(int32_t host_page, int32_t device_page);
  // Held -> Free, the contents discarded.
  void drop(int32_t host_page);
  bool held(int32_t host_page) const;

  // The copies queued since the last call, in order (the caller runs them in that order).
  std::vector<KVPageCopy> take_copies();
  bool has_copies() const { return !queue_.empty(); }

  // Throws nc::Error when held + free != total, a page is listed free twice or while held, or
  // the counters do not reconcile with the held pages.
  void check_invariants() const;

 private:
  void check_id(int32_t page, const char* what) const;

  int64_t page_bytes_ = 0;
  std::vector<uint8_t> held_;
  std::vector<int32_t> free_list_;  // a stack; lowest ids handed out first
  std::vector<KVPageCopy> queue_;
  HostTierCounters counters_;
};

// Host pages that fit in `bytes` of host memory (0 when bytes is 0). Throws nc::Error naming both
// sizes when `bytes` exceeds `physical_bytes` (the machine's memory), or when it is positive but
// holds no page.
int host_tier_pages(int64_t bytes, int64_t page_bytes, int64_t physical_bytes);

}  // namespace nc
