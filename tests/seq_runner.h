// A minimal driver of LlamaModel for tests: sequences get pages from a bump allocator, and a step
// runs any mix of prefill chunks and decodes. The engine's scheduler does this for real.
#pragma once
#include <vector>

#include "model/llama.h"

namespace nc::testing {

class SeqRunner {
 public:
  SeqRunner(LlamaModel& model, int page_size, int num_pages, KVLayout layout = KVLayout::NHD)
      : model_(model), page_size_(page_size), kv_(model.make_kv_cache(num_pages, page_size, layout)) {}

  int add_sequence() {
    seqs_.push_back({});
    return int(seqs_.size()) - 1;
  }

  // One step: seq ids[i] gets tokens[i] appended. Returns logits of every new token, per seq,
  // each [n_i, vocab] row-major (all rows, so tests can compare every position).
  std::vector<std::vector<float>> step(const std::vector<int>& ids,
                                       const std::vector<std::vector<int32_t>>& tokens) {
    ForwardInput in;
    PagedKVBatch batch;
    for (size_t i = 0; i < ids.size(); ++i) {
      Seq& s = seqs_[ids[i]];
      for (int32_t t : tokens[i]) {
        in.positions.push_back(s.len);
        in.token_ids.push_back(t);
        in.logit_rows.push_back(int32_t(in.token_ids.size()) - 1);
        ++s.len;
      }
      while (int(s.pages.size()) * page_size_ < s.len) s.pages.push_back(next_page_++);
      batch.add(int(tokens[i].size()), s.pages, s.len, page_size_);
    }
    in.attention.num_tokens = int(in.token_ids.size());
    in.attention.levels = {batch};
    std::vector<float> logits = model_.forward(in, kv_);
    const int64_t V = model_.config().vocab_size;
    std::vector<std::vector<float>> out;
    size_t row = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      out.emplace_back(logits.begin() + row * V, logits.begin() + (row + tokens[i].size()) * V);
      row += tokens[i].size();
    }
    return out;
  }

 private:
  struct Seq {
    int len = 0;
    std::vector<int32_t> pages;
  };
  LlamaModel& model_;
  int page_size_;
  KVCache kv_;
  std::vector<Seq> seqs_;
  int next_page_ = 0;
};

inline int32_t argmax(const float* p, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (p[i] > p[best]) best = i;
  return int32_t(best);
}

}  // namespace nc::testing
