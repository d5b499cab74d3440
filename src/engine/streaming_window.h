// StreamingWindow: the engine's StreamingLLM mode (Xiao et al., ICLR 2024; EngineConfig::
// streaming_window, docs/long_context.md), where every request keeps its first sink pages (the
// attention sinks) and its most recent `window` tokens, in whole pages, so that an endless stream
// runs in bounded memory.
//
// Eviction (evict(), called by the scheduler before it gives a running request new tokens):
// with S sink pages of P tokens, a request whose cache holds t tokens after its sinks drops the
// d = floor((t - window) / P) oldest full pages after the sinks when d >= 1: its cache then still
// holds at least `window` tokens before the new ones. A dropped page loses this request's
// reference (freed, unless the prefix cache holds it). Positions are StreamingLLM's, positions
// within the cache: the kept pages after the sinks move down by d * P positions, their keys
// re-rotated by the model before the step's pass (KVPageShift, Backend::shift_key_positions),
// and the request's next position is its cache length (Sequence::kv_len; Sequence::token_index
// maps positions to tokens). The prefix cache shares only the sink pages of a request that may
// evict (Sequence::share_limit): the pages after them are rewritten in place by the shifts.
//
// Bounds: during a decode step a request holds at most S + ceil(window / P) + 1 pages
// (max_decode_pages); a prefill chunk of n tokens adds its own pages on top, eviction running
// between chunks; positions stay below max_len (max_new_tokens caps a chunk there), which the
// constructor checks leaves room for a decode step: (S + ceil(window / P) + 1) * P <= max_len.
//
// Preemption (the scheduler's, by recompute) first evicts what the request's next step would
// (so no chunk of the recompute crosses an eviction) and keeps num_evicted: the recompute runs
// the tokens still in its cache, the sinks and the window's tokens, at positions 0 .. kv_len - 1,
// as a prefill, then the token it was to compute. The recomputed K/V is that of this shorter
// context (the dropped tokens are not seen again) rather than the K/V the stream had computed
// with them in view; every accepted token stays in Sequence::tokens and nothing is output twice.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/sequence.h"
#include "engine/step_model.h"
#include "kv/page_pool.h"
#include "kv/page_shift.h"

namespace nc {

struct StreamingConfig {
  int window = 0;      // tokens kept after the sinks (EngineConfig::streaming_window), >= page
  int sink_pages = 1;  // EngineConfig::streaming_sink_pages, >= 0
  int page_size = 16;
  int max_len = 0;  // positions stay below this (the engine's max_model_len)
};

// Since the engine started.
struct StreamingCounters {
  int64_t evictions = 0;       // times a request's window moved
  int64_t evicted_tokens = 0;  // tokens dropped from requests' caches
  int64_t evicted_pages = 0;   // pages dropped (each a reference given back)
  int64_t shifted_pages = 0;   // kept pages whose keys were re-rotated (in every layer)
};

class StreamingWindow {
 public:
  // Throws nc::Error (InvalidArgument) naming the bad value: a window smaller than a page, sink
  // pages < 0, or sinks + window + one page that do not fit max_len.
  explicit StreamingWindow(const StreamingConfig& config);

  const StreamingConfig& config() const { return cfg_; }
  int sink_tokens() const { return cfg_.sink_pages * cfg_.page_size; }
  int window_pages() const { return (cfg_.window + cfg_.page_size - 1) / cfg_.page_size; }
  // The most pages a request holds in a decode step: sinks + window pages + 1.
  int max_decode_pages() const { return cfg_.sink_pages + window_pages() + 1; }

  // Marks a new request as streaming: its sink tokens, and its share limit when it may ever
  // evict (its max_kv_tokens reach past the sinks, the window and one more page).
  void setup(Sequence& seq) const;
  // Drops seq's pages between its sinks and its window as the top comment says (none when its
  // cache is not past the window by a page), giving back its references to `pool`, and appends
  // the shifts of its kept pages after the sinks. Returns the tokens dropped.
  int evict(Sequence& seq, PagePool& pool, std::vector<KVPageShift>& shifts);
  // The most new tokens seq may still be given in this step (beyond those it has): positions
  // stay below max_len.
  int max_new_tokens(const Sequence& seq) const {
    return cfg_.max_len - seq.kv_len() - seq.num_scheduled;
  }

  const StreamingCounters& counters() const { return counters_; }

 private:
  StreamingConfig cfg_;
  StreamingCounters counters_;
};

// The engine's window (null when cfg.streaming_window is 0), once the configuration and the model
// (its KV cache allocated) allow one; else nc::Error naming the bad value: a negative setting,
// sparse attention on as well (its page bounds would go stale when keys move), or a model that
// cannot move its keys (StepModel::check_kv_shifts: MLA, fp8 pages, the backend).
std::unique_ptr<StreamingWindow> make_streaming_window(const EngineConfig& cfg, int max_model_len,
                                                       StepModel& model);

}  // namespace nc
