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
  sum_.restored += ev.delta.restored;
  sum_.offloaded += ev.delta.offloaded;
  sum_.dropped += ev.delta.dropped;
  host_total_ = ev.host.total;
  page_bytes_ = ev.page_bytes;
  peak_host_ = std::max(peak_host_, ev.host.used);
}

std::string PagePeaks::line() const {
  if (steps_ == 0) return "";
  return fmt::format(
      "kv pages: peak used {} of {} ({:.0f}%), peak cached {}, peak running {}; allocated {}, "
      "freed {}, cached {}, evicted {}, reloaded {}",
      peak_used_, total_, 100.0 * peak_used_ / std::max(total_, 1), peak_cached_, peak_running_,
      sum_.allocated, sum_.freed, sum_.cached, sum_.evicted, sum_.reloaded);
}

std::string PagePeaks::host_line() const {
  if (steps_ == 0 || host_total_ == 0) return "";
  return fmt::format(
      "host kv pages: peak used {} of {} ({:.0f}%); offloaded {}, reloaded {}, dropped {}; "
      "{:.1f} MiB to the host, {:.1f} MiB back",
      peak_host_, host_total_, 100.0 * peak_host_ / host_total_, sum_.offloaded, sum_.restored,
      sum_.dropped, double(sum_.offloaded * page_bytes_) / 1048576.0,
      double(sum_.restored * page_bytes_) / 1048576.0);
}

}  // namespace nc::cli
