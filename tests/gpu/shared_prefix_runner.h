// SharedPrefixRunner: drives several LlamaModels (one per backend or configuration) through the
// same steps over one page table, with shared prefixes as the prefix tree hands them out and
// cascade steps planned by the cascade planner (every shared node its own level).
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>

#include "gpu_test_util.h"
#include "kv/cascade_planner.h"
#include "model/llama.h"

namespace nc::testing {

// Sequences over one page table that every model's cache follows: a sequence may begin with
// another's full pages (a shared prefix, as the prefix tree hands them out). Decode steps are
// planned by the cascade planner (every shared node its own level), so they run as 2- or
// 3-level cascade steps.
class SharedPrefixRunner {
 public:
  SharedPrefixRunner(std::vector<LlamaModel*> models, int page_size, int num_pages)
      : models_(std::move(models)), ps_(page_size) {
    for (LlamaModel* m : models_) caches_.push_back(m->make_kv_cache(num_pages, page_size));
  }

  int add_sequence() {
    seqs_.push_back({});
    return int(seqs_.size()) - 1;
  }
  // A new sequence holding the first `tokens` (a multiple of the page size) of `parent`.
  int fork(int parent, int tokens) {
    Seq s;
    s.len = tokens;
    s.pages.assign(seqs_[parent].pages.begin(), seqs_[parent].pages.begin() + tokens / ps_);
    seqs_.push_back(s);
    return int(seqs_.size()) - 1;
  }

  // One step (seq ids[i] gets tokens[i]); cascade: planned by the cascade planner. Returns, per
  // model, the logits of each request's last token (in the step's request order) and sets
  // `levels` to the step's number of attention levels.
  std::vector<std::vector<float>> step(const std::vector<int>& ids,
                                       const std::vector<std::vector<int32_t>>& tokens,
                                       bool cascade, int* levels = nullptr) {
    std::vector<CascadeRequest> reqs;
    std::vector<int> first;
    for (size_t i = 0; i < ids.size(); ++i) {
      Seq& s = seqs_[ids[i]];
      first.push_back(s.len);
      s.len += int(tokens[i].size());
      while (int(s.pages.size()) * ps_ < s.len) s.pages.push_back(next_page_++);
      reqs.push_back({int(tokens[i].size()), s.len, s.pages, -1});
    }
    ForwardInput in;
    std::vector<int> order(ids.size());
    std::iota(order.begin(), order.end(), 0);
    if (cascade) {
      CascadePlan cp = CascadePlanner(ps_, CascadeMode::Always).plan(reqs);
      order = cp.order;
      in.attention = std::move(cp.step);
    } else {
      PagedKVBatch batch;
      for (const CascadeRequest& r : reqs) batch.add(r.q_len, r.pages, r.kv_len, ps_);
      in.attention.levels = {batch};
    }
    for (int i : order) {
      for (size_t t = 0; t < tokens[i].size(); ++t) {
        in.token_ids.push_back(tokens[i][t]);
        in.positions.push_back(first[i] + int(t));
      }
      in.logit_rows.push_back(int32_t(in.token_ids.size()) - 1);
    }
    in.attention.num_tokens = int(in.token_ids.size());
    if (levels) *levels = int(in.attention.levels.size());
    std::vector<std::vector<float>> out;
    for (size_t m = 0; m < models_.size(); ++m) out.push_back(models_[m]->forward(in, caches_[m]));
    return out;
  }

 private:
  struct Seq {
    int len = 0;
    std::vector<int32_t> pages;
  };
  std::vector<LlamaModel*> models_;
  std::vector<KVCache> caches_;
  int ps_;
  std::vector<Seq> seqs_;
  int next_page_ = 0;
};

// The worst row-wise relative error of models 1 and 2 against model 0 over the steps added, for
// SharedPrefixRunner's output (per model, rows of `vocab` logits).
struct WorstRowErrors {
  double first = 0, second = 0;
  void add(const std::vector<std::vector<float>>& out, int64_t vocab) {
    const size_t V = size_t(vocab), rows = out[0].size() / V;
    for (size_t r = 0; r < rows; ++r) {
      auto row = [&](int m) {
        return std::vector<float>(out[m].begin() + std::ptrdiff_t(r * V),
                                  out[m].begin() + std::ptrdiff_t((r + 1) * V));
      };
      first = std::max(first, rel_error(row(0), row(1)));
      second = std::max(second, rel_error(row(0), row(2)));
    }
  }
};

}  // namespace nc::testing
