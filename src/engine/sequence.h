// A request as the scheduler sees it: its tokens (prompt, then output), how many of them are in
// the KV cache, and its pages.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace nc {

enum class SeqStatus : uint8_t { Waiting, Running, Finished };

struct Sequence {
  int64_t id = 0;
  // Prompt, then the generated tokens. With asynchronous scheduling the last one or two may be
  // placeholders -1 - r (row r of a step still running) until their step's tokens are taken.
  std::vector<int32_t> tokens;
  int num_prompt = 0;
  // Tokens computed: their K/V is in `pages`, except the num_evicted a streaming window dropped.
  int num_computed = 0;
  // The most tokens it will ever compute: prompt + max_tokens - 1 (the last sampled token is
  // never fed back).
  int max_kv_tokens = 0;
  // Streaming window (engine/streaming_window.h): its KV cache holds tokens [0, sink_tokens) and
  // [sink_tokens + num_evicted, num_computed), at positions 0 .. kv_len() - 1 (StreamingLLM's
  // positions within the cache). Without a window num_evicted stays 0: positions are indices.
  bool streaming = false;
  int sink_tokens = 0;
  int num_evicted = 0;
  // Tokens at most that the prefix cache may attach to it or take from it (-1: no limit). A
  // streaming request that may evict shares only its sink pages: the pages after them are
  // re-rotated in place when the window moves, so no one else may read them.
  int share_limit = -1;
  std::vector<int32_t> pages;
  SeqStatus status = SeqStatus::Waiting;
  int64_t admit_order = -1;  // increases with each admission (a re-admission gets a new one)
  int num_preemptions = 0;
  int num_scheduled = 0;   // tokens scheduled in the step being planned
  int64_t session = -1;    // conversation whose cached pages get eviction priority; -1: none
  int64_t waits_for = -1;  // while waiting: the running request whose prefill it waits for
  // Its prompt's logits are wanted at every position (prompt logprobs): it computes the whole
  // prompt (no prefix-cache match, no waiting for a sharer) and each step returns a logit row
  // per prompt token it computes (StepPlan::prompt_rows).
  bool prompt_logits = false;

  int num_tokens() const { return int(tokens.size()); }
  // Tokens in its KV cache (the next position), and the index of the token at cache position pos.
  int kv_len() const { return num_computed - num_evicted; }
  int token_index(int pos) const { return pos < sink_tokens ? pos : pos + num_evicted; }
  // Tokens before the first placeholder: those known on the host.
  int num_known() const {
    return int(std::find_if(tokens.begin(), tokens.end(), [](int32_t t) { return t < 0; }) -
               tokens.begin());
  }
  int num_output() const { return num_tokens() - num_prompt; }
  int remaining() const { return num_tokens() - num_computed; }  // tokens still to compute
  bool is_decode() const { return remaining() == 1 && num_computed > 0; }
};

}  // namespace nc
