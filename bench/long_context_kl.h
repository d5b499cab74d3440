// What sparse decode attention (Quest page selection, issue #13) costs in next-token
// distributions: a long real text, prefilled densely for `context` tokens, then teacher-forced
// token by token for `positions` decode steps, once densely and once per token budget, all in
// one batch: the entries share the prefill's pages (the prefix cache's layout) and each keeps its
// own pages for the tokens it decodes, so every variant sees exactly the same text and differs
// only in the attention of its decode steps (selection applies to decode only). Repeated over
// `segments` disjoint stretches of the text.
//
// For each budget: the mean and largest KL(dense || sparse) of the next-token distributions,
// the perplexity of the text under each, how often the argmax tokens agree, and the share of
// pages the selection skipped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nc::quality {

struct KlOptions {
  std::string model, text, backend = "cpu";
  int context = 6144;   // tokens prefilled densely before the decode steps (a page multiple)
  int positions = 256;  // teacher-forced decode steps per segment
  int segments = 2;     // disjoint stretches of the text
  int chunk = 1024;     // prefill chunk
  int page_size = 16;
  std::vector<int> budgets = {512, 1024, 2048};
  int sink_pages = 1, window = 128, dense_layers = 2;  // EngineConfig's defaults
  bool hnd = false;                                    // the cache's layout: HND (else NHD)
  bool per_head = false;  // per-KV-head selection (SparseOptions::per_head; needs hnd)
};

struct KlResult {
  int budget = 0;
  int64_t positions = 0;
  double kl_sum = 0, kl_max = 0, nll = 0;
  int64_t argmax_agree = 0;
};

struct KlReport {
  int64_t text_tokens = 0;
  double dense_nll = 0;  // summed over the positions
  int64_t positions = 0;
  std::vector<KlResult> budgets;
  int64_t pages_read = 0, pages_skipped = 0;
  double seconds = 0;
};

// Throws nc::Error / std::runtime_error for a text too short or unreadable, bad sizes.
KlReport run_kl(const KlOptions& o);
void print_kl(const KlOptions& o, const KlReport& r);

}  // namespace nc::quality
