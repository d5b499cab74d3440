// A minimal driver of LlamaModel for tests: sequences get pages from a bump allocator, and a step
// runs any mix of prefill chunks and decodes. The engine's scheduler does this for real.
#pragma once
#include <algorithm>
#include <functional>
#include <vector>

#include "golden.h"
#include "model/llama.h"

namespace nc::testing {

// How a prompt is fed: in one step, in chunks of 6 tokens, or one token per step.
enum class ChunkMode { OneChunk, Chunks, TokenByToken };

// Splits a prompt into the chunks a mode feeds it in.
inline std::vector<std::vector<int32_t>> chunks_of(const std::vector<int32_t>& ids,
                                                   ChunkMode mode) {
  const size_t size = mode == ChunkMode::OneChunk ? ids.size() : mode == ChunkMode::Chunks ? 6 : 1;
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < ids.size(); i += size)
    out.emplace_back(ids.begin() + i, ids.begin() + std::min(ids.size(), i + size));
  return out;
}

class SeqRunner {
 public:
  SeqRunner(LlamaModel& model, int page_size, int num_pages, KVLayout layout = KVLayout::NHD)
      : model_(model),
        page_size_(page_size),
        kv_(model.make_kv_cache(num_pages, page_size, layout)) {}

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

  // New sequences, one per prompt, each fed its chunks in order; every step feeds every prompt
  // that has one its next chunk (so prefills of different lengths and decodes share steps).
  // Returns each prompt's logits for all its tokens, row-major [tokens, vocab].
  std::vector<std::vector<float>> run_chunks(
      const std::vector<std::vector<std::vector<int32_t>>>& chunks) {
    std::vector<int> ids;
    for (size_t p = 0; p < chunks.size(); ++p) ids.push_back(add_sequence());
    std::vector<std::vector<float>> logits(chunks.size());
    for (size_t step = 0;; ++step) {
      std::vector<int> who;
      std::vector<size_t> prompt;
      std::vector<std::vector<int32_t>> toks;
      for (size_t p = 0; p < chunks.size(); ++p)
        if (step < chunks[p].size()) {
          who.push_back(ids[p]);
          prompt.push_back(p);
          toks.push_back(chunks[p][step]);
        }
      if (who.empty()) break;
      auto out = this->step(who, toks);
      for (size_t i = 0; i < who.size(); ++i)
        logits[prompt[i]].insert(logits[prompt[i]].end(), out[i].begin(), out[i].end());
    }
    return logits;
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

// Feeds every golden prompt, then decodes greedily for as many tokens as the golden data has,
// all prompts in the same steps. on_prompt_logits (optional) sees each prompt's last-token logits.
inline std::vector<std::vector<int32_t>> greedy_decode(
    SeqRunner& runner, const std::vector<GoldenPrompt>& golden, int64_t V,
    const std::function<void(size_t, const float*)>& on_prompt_logits) {
  std::vector<int> ids;
  std::vector<std::vector<int32_t>> next;
  for (const GoldenPrompt& g : golden) {
    ids.push_back(runner.add_sequence());
    next.push_back(g.ids);
  }
  std::vector<std::vector<int32_t>> generated(golden.size());
  for (size_t step = 0; step < golden[0].greedy.size(); ++step) {
    auto out = runner.step(ids, next);
    for (size_t p = 0; p < golden.size(); ++p) {
      const float* last = out[p].data() + out[p].size() - V;
      if (step == 0 && on_prompt_logits) on_prompt_logits(p, last);
      generated[p].push_back(argmax(last, V));
      next[p] = {generated[p].back()};
    }
  }
  return generated;
}

}  // namespace nc::testing
