// The request lifecycle: a Request is what the engine knows of one request besides its Sequence
// (sampling state, detokenizer, stop matcher, timings, the output not yet handed out), and the
// RequestTable holds them all from add() to the output that reports them finished.
//
// Lifecycle: add() validates the prompt and the parameters against the vocabulary and the
// context (throwing nc::Error naming the bad value, queuing nothing) and queues the Sequence on
// the scheduler; on_token() takes each sampled token (stop ids, EOS, stop strings, max_tokens,
// the context); finish() ends a request once (pages go back to the pool at once); take_outputs()
// hands out what changed since the last call and erases finished requests, except one the step
// in flight still names (asynchronous scheduling: its tokens arrive after the request finished
// and must find it).
//
// Invariants: a finished request never has a placeholder token (finish() cuts the tokens at
// the first one); a request is erased only after its finished output was taken.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/detokenizer.h"
#include "engine/grammar.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/streaming_window.h"
#include "engine/text_codec.h"
#include "nanocascade/engine.h"

namespace nc {

using EngineClock = std::chrono::steady_clock;

struct Request {
  Sequence seq;
  SamplingParams params;
  std::mt19937_64 rng;
  std::unique_ptr<IncrementalDetokenizer> detok;
  std::unique_ptr<StopStringMatcher> stop;
  std::vector<int32_t> masked_before_min;  // EOS and stop ids, masked until min_tokens
  // Structured output (params.structured): the request's matcher, and the bitmask of the tokens
  // it allows next (filled when a step that samples it launches; empty without a grammar).
  std::unique_ptr<TokenGrammar> grammar;
  std::vector<int32_t> token_bitmask;
  EngineClock::time_point arrival, first_token, last_token;
  int64_t last_step = -1;  // serial of the last step that computed tokens of it
  int sparse_budget = 0;   // params.sparse_budget resolved (SparseRule): 0 = dense
  bool finished = false;
  FinishReason reason = FinishReason::None;
  int32_t stop_token = -1;   // the stop_token_ids id that ended it (not EOS), else -1
  std::string abort_reason;  // why the engine aborted it, where the request is at fault
  // Prompt logprobs (params.prompt_logprobs >= 0): entry p is the prompt token at p + 1; sent
  // once, with the first output token.
  std::vector<TokenLogprob> prompt_lps;
  bool prompt_lps_sent = false;
  // What the next RequestOutput carries.
  bool touched = false;
  std::vector<int32_t> new_ids;
  std::vector<TokenLogprob> new_logprobs;  // aligned with new_ids when params.logprobs >= 0
  std::string delta;
};

// The public form of a row's log-probabilities.
TokenLogprob to_token_logprob(const RowLogprobs& lp);

// How a request's SamplingParams::sparse_budget resolves (EngineConfig::sparse_budget): -1 takes
// the engine's budget, 0 is dense, N > 0 needs sparse attention on and N >= floor (the sink pages'
// tokens + the window).
struct SparseRule {
  bool enabled = false;
  int default_budget = 0;
  int64_t floor = 0;
  int resolve(int requested) const;  // nc::Error (InvalidArgument) naming the budget
};

class RequestTable {
 public:
  // `vocab` and `max_model_len` bound prompts and outputs; `seed` seeds requests without one.
  RequestTable(const TextCodec& codec, Scheduler& sched, int vocab, int max_model_len,
               uint64_t seed);
  // Where structured requests get their matchers (none: add() refuses them).
  void set_grammars(GrammarCache* grammars) { grammars_ = grammars; }
  void set_sparse_rule(const SparseRule& rule) { sparse_ = rule; }
  // The streaming window (null: none): its requests are streams, never refused or finished for
  // the context's length (their positions stay inside the window), and set up by it.
  void set_streaming_window(const StreamingWindow* window) { window_ = window; }

  // Validates and queues a request; throws nc::Error for bad input (and queues nothing).
  RequestId add(std::vector<int32_t> prompt, const SamplingParams& p);
  Request* find(RequestId id);  // null when unknown or already erased
  Request& at(RequestId id);    // throws std::out_of_range when unknown
  // The token at r.seq.tokens[index] has arrived (later placeholders may follow it): output,
  // stop checks, detokenization; finishes r on a stop or at its length.
  void on_token(Request& r, int index, EngineClock::time_point now);
  // Ends r (no-op when already finished) and frees its pages.
  void finish(Request& r, FinishReason reason);
  // Ends every unfinished request as aborted.
  void abort_all();
  // An output for every request touched since the last call, in id order; finished requests go,
  // except those whose last step is the step in flight (`in_flight_serial`).
  std::vector<RequestOutput> take_outputs(std::optional<int64_t> in_flight_serial);
  // Whether a request is unfinished or has an output not yet taken.
  bool has_unfinished() const;
  size_t size() const { return requests_.size(); }

 private:
  void validate_prompt(const std::vector<int32_t>& prompt, const SamplingParams& p) const;
  RequestOutput take_output(Request& r);

  const TextCodec& codec_;
  Scheduler& sched_;
  int vocab_ = 0;
  int max_model_len_ = 0;
  std::vector<int32_t> eos_;
  std::mt19937_64 seed_rng_;
  std::map<RequestId, std::unique_ptr<Request>> requests_;
  RequestId next_id_ = 0;
  GrammarCache* grammars_ = nullptr;
  SparseRule sparse_;
  const StreamingWindow* window_ = nullptr;
};

// ---- How a request's next token is drawn ----

// Whether r's next token is drawn as Backend::sample_tokens draws (`device_sampling`: on in the
// config and offered by the model; and no host-only parameter in effect: penalties, or EOS /
// stop ids masked until min_tokens).
bool draws_like_device(const Request& r, bool device_sampling);
// r's parameters for Backend::sample_tokens (draws the row's seed from r's RNG, except greedy).
// With the request's logprobs, logit_bias and token bitmask.
RowSampling row_sampling(Request& r);
// r's next token from its row of host logits (modified: logit_bias, the grammar's bitmask,
// penalties, masks). A request
// that draws like the device draws as the device would, so its tokens do not depend on its batch.
int32_t host_sample(std::span<float> logits, Request& r, bool device_sampling);
// Prompt logprobs: the logit row of prompt position `pos` gives the log-probability of the
// prompt token at pos + 1.
void record_prompt_logprob(Request& r, int pos, std::span<const float> logits);
// Structured output: fills r.token_bitmask from its matcher (no-op without a grammar).
void fill_token_bitmask(Request& r, int vocab);

}  // namespace nc
