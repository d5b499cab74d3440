// PagePeaks: the memory hook behind bench's "kv pages:" summary line. It keeps, over the steps it
// sees, the most pages used and cached at once, the most requests running with pages, and the sums
// of the page transitions (nanocascade/memory_hooks.h), so that a run's peak KV use and its cache
// churn (evictions, reloads) show next to its throughput.
#pragma once
#include <string>

#include "nanocascade/memory_hooks.h"

namespace nc::cli {

class PagePeaks : public MemoryHook {
 public:
  void on_step(const MemoryStepEvent& ev) override;
  // "kv pages: peak used U of T (P%), peak cached C, peak running R; allocated A, freed F,
  // cached K, evicted E, reloaded L"; "" before any step.
  std::string line() const;
  // "host kv pages: peak used U of T (P%); offloaded O, reloaded R, dropped D; X MiB to the host,
  // Y MiB back"; "" without a host tier.
  std::string host_line() const;

 private:
  int steps_ = 0;
  int total_ = 0;
  int peak_used_ = 0;
  int peak_cached_ = 0;
  int peak_running_ = 0;
  int host_total_ = 0;
  int peak_host_ = 0;
  int64_t page_bytes_ = 0;
  PageTransitions sum_;
};

}  // namespace nc::cli
