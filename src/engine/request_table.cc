// The request lifecycle (engine/request.h): add, token arrival, finish, outputs; and how a
// request's next token is drawn.
#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "engine/request.h"
#include "engine/sampling.h"

namespace nc {
namespace {

double seconds(EngineClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

RequestTable::RequestTable(const TextCodec& codec, Scheduler& sched, int vocab, int max_model_len,
                           uint64_t seed)
    : codec_(codec),
      sched_(sched),
      vocab_(vocab),
      max_model_len_(max_model_len),
      eos_(codec.eos_token_ids()),
      seed_rng_(seed) {}

void RequestTable::validate_prompt(const std::vector<int32_t>& prompt,
                                   const SamplingParams& p) const {
  p.validate();
  NC_CHECK_AS(ErrorKind::InvalidArgument, !prompt.empty(), "request: empty prompt");
  for (int32_t id : prompt) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < vocab_,
                "request: prompt token id {} outside the vocabulary [0, {})", id, vocab_);
  }
  for (int32_t id : p.stop_token_ids) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < vocab_,
                "stop_token_ids: token id {} is outside the vocabulary [0, {})", id, vocab_);
  }
  for (const auto& [id, bias] : p.logit_bias) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < vocab_,
                "logit_bias: token id {} is outside the vocabulary [0, {})", id, vocab_);
  }
  const int n = int(prompt.size());
  if (window_) return;  // a stream is endless: its cache keeps sinks and window (positions fit)
  NC_CHECK_AS(ErrorKind::ContextLength, n < max_model_len_,
              "request: prompt has {} tokens, the context is {} tokens", n, max_model_len_);
  NC_CHECK_AS(ErrorKind::ContextLength, int64_t(n) + p.max_tokens <= max_model_len_,
              "request: prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens", n,
              p.max_tokens, max_model_len_);
}

int SparseRule::resolve(int requested) const {
  if (requested < 0) return enabled ? default_budget : 0;
  if (requested == 0) return 0;
  NC_CHECK_AS(ErrorKind::InvalidArgument, enabled,
              "sparse_budget {}: sparse attention is off in this engine (start it with "
              "--sparse-budget N so page bounds are kept)",
              requested);
  NC_CHECK_AS(ErrorKind::InvalidArgument, requested >= floor,
              "sparse_budget {}: below the sink pages and window the engine keeps ({} tokens)",
              requested, floor);
  return requested;
}

RequestId RequestTable::add(std::vector<int32_t> prompt, const SamplingParams& p) {
  validate_prompt(prompt, p);
  const int sparse_budget = sparse_.resolve(p.sparse_budget);
  const int n = int(prompt.size());
  auto r = std::make_unique<Request>();
  r->seq.id = next_id_;
  r->seq.num_prompt = n;
  // A stream may run to the int range (max_tokens is an int too).
  r->seq.max_kv_tokens = int(std::min<int64_t>(int64_t(n) + p.max_tokens - 1, INT32_MAX - 1));
  if (window_) window_->setup(r->seq);
  r->seq.tokens = std::move(prompt);
  r->params = p;
  if (r->params.temperature < kGreedyTemperature) r->params.temperature = 0;  // sampling.h
  r->sparse_budget = sparse_budget;
  r->rng.seed(p.seed ? *p.seed : seed_rng_());
  r->detok = std::make_unique<IncrementalDetokenizer>(codec_, r->seq.tokens, p.skip_special_tokens);
  r->stop = std::make_unique<StopStringMatcher>(p.stop);
  if (p.structured.active()) {
    NC_CHECK_AS(ErrorKind::Unsupported, grammars_ != nullptr,
                "request: structured output ({}) is not available here",
                structured_kind_name(p.structured.kind));
    r->grammar = grammars_->matcher(p.structured);
  }
  r->masked_before_min = p.stop_token_ids;
  if (!p.ignore_eos)
    r->masked_before_min.insert(r->masked_before_min.end(), eos_.begin(), eos_.end());
  if (p.prompt_logprobs >= 0) {
    r->seq.prompt_logits = true;
    r->prompt_lps.resize(size_t(n - 1));
  }
  r->arrival = EngineClock::now();
  sched_.add(&r->seq);  // throws when it could never fit in the KV cache
  requests_.emplace(next_id_, std::move(r));
  return next_id_++;
}

Request* RequestTable::find(RequestId id) {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

Request& RequestTable::at(RequestId id) {
  return *requests_.at(id);
}

void RequestTable::finish(Request& r, FinishReason reason) {
  if (r.finished) return;
  if (reason != FinishReason::Abort && !r.stop->stopped()) {
    r.delta += r.stop->append(r.detok->flush());
    r.delta += r.stop->flush();
  }
  // A token still being sampled (asynchronous scheduling) is not part of the output. Normally
  // only the last one or two are; after a failed step one may be left further in, so the tokens
  // are cut at the first, and the computed count with them (the prefix cache then keeps only
  // known tokens' pages).
  Sequence& q = r.seq;
  q.tokens.resize(size_t(q.num_known()));
  q.num_computed = std::min(q.num_computed, q.num_tokens());
  r.finished = true;
  r.reason = reason;
  r.touched = true;
  sched_.finish(&r.seq);  // pages go back at once
}

void RequestTable::on_token(Request& r, int index, EngineClock::time_point now) {
  const SamplingParams& p = r.params;
  const int32_t tok = r.seq.tokens[size_t(index)];
  const int num_output = index + 1 - r.seq.num_prompt;
  r.new_ids.push_back(tok);
  r.touched = true;
  if (num_output == 1) r.first_token = now;
  r.last_token = now;
  // Drawn under the grammar's bitmask, so the grammar takes it; one it refuses was drawn from an
  // empty mask (no token can go on: a grammar, regex or schema that cannot be completed).
  if (r.grammar && !r.grammar->accept(tok)) {
    r.abort_reason = fmt::format(
        "structured output: nothing can follow the first {} generated tokens (the grammar, "
        "regex or schema admits no next token)",
        num_output - 1);
    finish(r, FinishReason::Abort);
    return;
  }
  const bool is_eos = !p.ignore_eos && contains(eos_, tok);
  if (is_eos || contains(p.stop_token_ids, tok)) {  // their text is not part of the output
    if (!is_eos) r.stop_token = tok;
    finish(r, FinishReason::Stop);
    return;
  }
  const std::string text = r.detok->push(tok);
  // Stop strings count only in the text of tokens after the min_tokens-th (vLLM's rule; EOS and
  // stop ids are masked for the first min_tokens, so they too can end token min_tokens + 1).
  r.delta += r.stop->append(text, num_output > p.min_tokens);
  if (r.stop->stopped() || (r.grammar && r.grammar->terminated())) {
    finish(r, FinishReason::Stop);
  } else if (num_output >= p.max_tokens || (!window_ && index + 1 >= max_model_len_) ||
             index + 1 >= INT32_MAX - 1) {
    finish(r, FinishReason::Length);
  }
}

RequestOutput RequestTable::take_output(Request& r) {
  RequestOutput o;
  o.id = r.seq.id;
  o.new_token_ids = std::move(r.new_ids);
  o.logprobs = std::move(r.new_logprobs);
  // Prompt logprobs go out once the prompt is computed (with the first token) or at the end.
  if (r.params.prompt_logprobs >= 0 && !r.prompt_lps_sent &&
      (r.seq.num_known() > r.seq.num_prompt || r.finished)) {
    o.prompt_logprobs = std::move(r.prompt_lps);
    r.prompt_lps_sent = true;
    r.seq.prompt_logits = false;  // a recompute after a preemption may use the prefix cache
  }
  o.text_delta = std::move(r.delta);
  o.finished = r.finished;
  o.finish_reason = r.reason;
  if (r.finished && r.stop->stopped()) o.stop_string = r.stop->matched();
  if (r.finished) o.stop_token_id = r.stop_token;
  if (r.finished) o.abort_reason = r.abort_reason;
  o.num_prompt_tokens = r.seq.num_prompt;
  // Tokens out so far: not a placeholder still being sampled (asynchronous scheduling).
  const int n = r.seq.num_known() - r.seq.num_prompt;
  o.num_completion_tokens = n;
  if (n >= 1) o.time_to_first_token_s = seconds(r.first_token - r.arrival);
  if (n >= 2) o.time_per_output_token_s = seconds(r.last_token - r.first_token) / (n - 1);
  r.new_ids.clear();
  r.new_logprobs.clear();
  r.delta.clear();
  r.touched = false;
  return o;
}

std::vector<RequestOutput> RequestTable::take_outputs(std::optional<int64_t> in_flight_serial) {
  std::vector<RequestOutput> outs;
  for (auto it = requests_.begin(); it != requests_.end();) {
    Request& r = *it->second;
    if (r.touched) outs.push_back(take_output(r));
    // A finished request stays while the step in flight still names it.
    const bool referenced = in_flight_serial && r.last_step == *in_flight_serial;
    it = r.finished && !referenced ? requests_.erase(it) : std::next(it);
  }
  return outs;
}

void RequestTable::abort_all() {
  for (auto& [id, r] : requests_)
    if (!r->finished) finish(*r, FinishReason::Abort);
}

bool RequestTable::has_unfinished() const {
  for (const auto& [id, r] : requests_) {
    if (!r->finished || r->touched) return true;
  }
  return false;
}

// ---- How a request's next token is drawn ----

bool draws_like_device(const Request& r, bool device_sampling) {
  if (!device_sampling) return false;
  const SamplingParams& p = r.params;
  // Top-k / top-p / min-p are drawn on the device too; penalties need the host.
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    return false;
  // EOS / stop ids masked until min_tokens: the host sampler does that.
  return r.seq.num_output() >= p.min_tokens || r.masked_before_min.empty();
}

RowSampling row_sampling(Request& r) {
  const SamplingParams& p = r.params;
  const bool greedy = p.temperature == 0;
  // Greedy draws nothing, as on the host.
  RowSampling row;
  row.inv_temperature = greedy ? 0.0f : 1.0f / p.temperature;
  row.seed = greedy ? 0 : r.rng();
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.logprobs = p.logprobs;
  row.bias = p.logit_bias;
  row.token_bitmask = r.token_bitmask;
  return row;
}

TokenLogprob to_token_logprob(const RowLogprobs& lp) {
  TokenLogprob t;
  t.token = lp.token;
  t.logprob = lp.logprob;
  for (size_t i = 0; i < lp.top_ids.size(); ++i)
    t.top.emplace_back(lp.top_ids[i], lp.top_logprobs[i]);
  return t;
}

void record_prompt_logprob(Request& r, int pos, std::span<const float> logits) {
  if (r.params.prompt_logprobs < 0 || r.prompt_lps_sent) return;
  if (pos < 0 || size_t(pos) >= r.prompt_lps.size()) return;
  const int32_t next = r.seq.tokens[size_t(pos) + 1];
  r.prompt_lps[size_t(pos)] =
      to_token_logprob(row_logprobs(logits, next, r.params.prompt_logprobs));
}

int32_t host_sample(std::span<float> logits, Request& r, bool device_sampling) {
  // A request that another row's penalty brought to the host draws as the device would: its
  // tokens do not depend on its batch.
  if (draws_like_device(r, device_sampling)) return draw_token(logits, row_sampling(r));
  for (const auto& [id, bias] : r.params.logit_bias) logits[size_t(id)] += bias;  // ids checked
  if (!r.token_bitmask.empty()) apply_token_bitmask_row(logits, r.token_bitmask);
  const std::span<const int32_t> all(r.seq.tokens);
  const std::span<const int32_t> masked = r.seq.num_output() < r.params.min_tokens
                                              ? std::span<const int32_t>(r.masked_before_min)
                                              : std::span<const int32_t>();
  return sample_token(logits, r.params, all.first(size_t(r.seq.num_prompt)),
                      all.subspan(size_t(r.seq.num_prompt)), masked, r.rng);
}

void fill_token_bitmask(Request& r, int vocab) {
  if (!r.grammar) return;
  r.token_bitmask.resize(size_t(bitmask_words(vocab)));
  r.grammar->fill_bitmask(r.token_bitmask);
}

}  // namespace nc
