// The streaming window's eviction (engine/streaming_window.h).
#include "engine/streaming_window.h"

#include "core/error.h"

namespace nc {

StreamingWindow::StreamingWindow(const StreamingConfig& c) : cfg_(c) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg_.page_size >= 1, "streaming window: page size {}",
              cfg_.page_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg_.window >= cfg_.page_size,
              "streaming_window {} is smaller than a page ({} tokens): the window keeps whole "
              "pages",
              cfg_.window, cfg_.page_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg_.sink_pages >= 0,
              "streaming_sink_pages must be >= 0, got {}", cfg_.sink_pages);
  // In 64 bits, before the int accessors run: a window of INT_MAX ("unbounded") must not wrap
  // into a small page count that fits. Once this holds, every accessor's sum fits an int.
  const int64_t ps = cfg_.page_size, window_pages = (int64_t(cfg_.window) + ps - 1) / ps;
  const int64_t need = (int64_t(cfg_.sink_pages) + window_pages + 1) * ps;
  NC_CHECK_AS(ErrorKind::ContextLength, need <= cfg_.max_len,
              "streaming window: {} sink pages + {} window pages + 1 page of {} tokens ({} "
              "positions) do not fit the context of {} tokens",
              cfg_.sink_pages, window_pages, cfg_.page_size, need, cfg_.max_len);
}

void StreamingWindow::setup(Sequence& seq) const {
  seq.streaming = true;
  seq.sink_tokens = sink_tokens();
  // It evicts once its cache holds sinks + window + a page: before a step (kv_len <= max - 1),
  // or when it is preempted (recompute drops what its next prefill would not keep) with all of
  // its tokens computed, its last still in flight (asynchronous scheduling: kv_len == max).
  const int64_t first_eviction = int64_t(sink_tokens()) + cfg_.window + cfg_.page_size;
  seq.share_limit = int64_t(seq.max_kv_tokens) >= first_eviction ? sink_tokens() : -1;
}

int StreamingWindow::evict(Sequence& seq, PagePool& pool, std::vector<KVPageShift>& shifts) {
  if (!seq.streaming) return 0;
  const int ps = cfg_.page_size, tail = seq.kv_len() - sink_tokens();
  if (tail - cfg_.window < ps) return 0;
  const int drop = (tail - cfg_.window) / ps;  // whole pages; >= window tokens stay
  const int first = cfg_.sink_pages;
  // (More when pages for this step's tokens were taken already: a preemption's eviction.)
  NC_CHECK(int(seq.pages.size()) >= (seq.kv_len() + ps - 1) / ps,
           "streaming window: request {} holds {} pages for {} tokens", seq.id, seq.pages.size(),
           seq.kv_len());
  for (int j = first; j < first + drop; ++j) pool.dec_ref(seq.pages[size_t(j)]);
  seq.pages.erase(seq.pages.begin() + first, seq.pages.begin() + first + drop);
  // The kept pages after the sinks move down by the dropped tokens.
  for (int j = first; j < int(seq.pages.size()); ++j)
    shifts.push_back({seq.pages[size_t(j)], (j + drop) * ps, j * ps});
  seq.num_evicted += drop * ps;
  ++counters_.evictions;
  counters_.evicted_tokens += int64_t(drop) * ps;
  counters_.evicted_pages += drop;
  counters_.shifted_pages += int64_t(seq.pages.size()) - first;
  return drop * ps;
}

std::unique_ptr<StreamingWindow> make_streaming_window(const EngineConfig& cfg, int max_model_len,
                                                       StepModel& model) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.streaming_window >= 0,
              "streaming_window must be >= 0 (0: off), got {}", cfg.streaming_window);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.streaming_sink_pages >= 0,
              "streaming_sink_pages must be >= 0, got {}", cfg.streaming_sink_pages);
  if (cfg.streaming_window == 0) return nullptr;
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.sparse_budget == 0,
              "streaming window: sparse attention (sparse_budget {}) cannot be on as well: its "
              "page bounds would go stale when the window re-rotates keys",
              cfg.sparse_budget);
  auto w = std::make_unique<StreamingWindow>(StreamingConfig{
      cfg.streaming_window, cfg.streaming_sink_pages, cfg.page_size, max_model_len});
  model.check_kv_shifts();
  return w;
}

}  // namespace nc
