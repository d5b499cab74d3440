#include "cli/page_peaks.h"

#include <fmt/format.h>

#include <algorithm>

namespace nc::cli {

void PagePeaks::on_step(const MemoryStepEvent& ev) {
  ++steps_;
  total_ = ev.pages.total;
  peak_used_ = std::max(peak_used_, ev.pages.used);
  peak_cached_ = std::max(peak_cached_, ev.pages.cached);
  peak_running_ = std::max(peak_running_, int(ev.requests.size()));
  sum_.allocated += ev.delta.allocated;
  sum_.freed += ev.delta.freed;
  sum_.cached += ev.delta.cached;
  sum_.evicted += ev.delta.evicted;
  sum_.reloaded += ev.delta.reloaded;
}

std::string PagePeaks::line() const {
  if (steps_ == 0) return "";
  return fmt::format(
      "kv pages: peak used {} of {} ({:.0f}%), peak cached {}, peak running {}; allocated {}, "
      "freed {}, cached {}, evicted {}, reloaded {}",
      peak_used_, total_, 100.0 * peak_used_ / std::max(total_, 1), peak_cached_, peak_running_,
      sum_.allocated, sum_.freed, sum_.cached, sum_.evicted, sum_.reloaded);
}

}  // namespace nc::cli
