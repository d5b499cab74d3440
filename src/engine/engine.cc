#include "nanocascade/engine.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "engine/detokenizer.h"
#include "engine/prefix_cache.h"
#include "engine/sampling.h"
#include "engine/scheduler.h"
#include "engine/step_model.h"
#include "engine/step_plan.h"
#include "kv/page_pool.h"

namespace nc {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Abort:
      return "abort";
    default:
      return "";
  }
}

std::string EngineConfig::default_model_path() {
  return std::string(NC_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

KVLayout parse_layout(const std::string& s) {
  if (s == "NHD" || s == "nhd") return KVLayout::NHD;
  if (s == "HND" || s == "hnd") return KVLayout::HND;
  fail_as(ErrorKind::InvalidArgument, "kv layout '{}': expected NHD or HND", s);
}

struct Request {
  Sequence seq;
  SamplingParams params;
  std::mt19937_64 rng;
  std::unique_ptr<IncrementalDetokenizer> detok;
  std::unique_ptr<StopStringMatcher> stop;
  std::vector<int32_t> masked_before_min;  // EOS and stop ids, masked until min_tokens
  Clock::time_point arrival, first_token, last_token;
  int64_t last_step = -1;  // serial of the last step that computed tokens of it
  bool finished = false;
  FinishReason reason = FinishReason::None;
  // What the next RequestOutput carries.
  bool touched = false;
  std::vector<int32_t> new_ids;
  std::string delta;
};

// A step the model has been given: its plan and, until the engine takes them, its tokens.
struct LaunchedStep {
  int64_t serial = 0;
  StepPlan plan;
  std::unique_ptr<PendingTokens> ids;  // sampled by the model (device sampling)
  std::vector<float> logits;           // else [sample rows, vocab] for the host sampler
  // Per logit row: where its token goes in the request's tokens (a placeholder the scheduler
  // already planned with), or -1: appended when it arrives.
  std::vector<int> token_index;
  EngineStats::StepKind* kind = nullptr;
};

}  // namespace

struct Engine::Impl {
  EngineConfig cfg;
  std::unique_ptr<StepModel> model;
  std::unique_ptr<TextCodec> codec;
  std::unique_ptr<PagePool> pool;
  std::unique_ptr<Scheduler> sched;
  // Prefix cache and cascade (null when disabled); the tree gives its pages back to the pool
  // before the pool goes.
  std::unique_ptr<PrefixTree> tree;
  std::unique_ptr<TreePrefixCache> prefix_cache;
  std::unique_ptr<CascadePlanner> planner;
  int max_model_len = 0;
  int vocab = 0;
  int64_t kv_bytes = 0;
  double device_s_seen = 0;  // model->device_seconds() after the last step
  double prep_s_seen = 0;    // model->host_prep_seconds() after the last step
  std::vector<int32_t> eos;
  std::mt19937_64 seed_rng;
  std::map<RequestId, std::unique_ptr<Request>> requests;
  std::map<std::string, int64_t> sessions;  // session name -> the tree's session id
  RequestId next_id = 0;
  int64_t next_step = 0;
  // The step whose tokens are still on their way (asynchronous scheduling).
  std::unique_ptr<LaunchedStep> in_flight;
  EngineStats st;

  Impl(const EngineConfig& c, std::unique_ptr<StepModel> m, std::unique_ptr<TextCodec> t);
  RequestId add(std::vector<int32_t> prompt, const SamplingParams& p);
  std::vector<RequestOutput> step();
  // Schedules, plans and queues the next step on the model; null when nothing is scheduled.
  std::unique_ptr<LaunchedStep> launch_step();
  // Takes a launched step's tokens (waiting for them) and hands them to their requests.
  void complete_step(LaunchedStep& s);
  void abort_requests_of(const LaunchedStep& s);
  int32_t host_sample(LaunchedStep& s, size_t row, Request& r);
  void on_token(Request& r, int index, Clock::time_point now);
  void finish(Request& r, FinishReason reason);
  RequestOutput take_output(Request& r);
  void setup_cache(int64_t kv_bytes_per_page, bool cuda);
  void record_cascade(const CascadeStats& cs);
  bool device_sampling_applies(const StepPlan& plan) const;
  // Whether r's next token is drawn as Backend::sample_tokens draws (device sampling on and no
  // host-only parameter in effect), and with what parameters (draws from r's RNG).
  bool draws_like_device(const Request& r) const;
  RowSampling row_sampling(Request& r);
};

Engine::Impl::Impl(const EngineConfig& c, std::unique_ptr<StepModel> m,
                   std::unique_ptr<TextCodec> t)
    : cfg(c), model(std::move(m)), codec(std::move(t)), seed_rng(c.seed) {
  NC_CHECK(model && codec, "engine: a model and a tokenizer are required");
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.page_size >= 1 && cfg.page_size <= 256,
              "engine: page_size {} outside 1..256", cfg.page_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_num_batched_tokens >= 1,
              "engine: max_num_batched_tokens must be >= 1, got {}", cfg.max_num_batched_tokens);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_num_seqs >= 1,
              "engine: max_num_seqs must be >= 1, got {}", cfg.max_num_seqs);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_model_len >= 0,
              "engine: max_model_len must be >= 0, got {}", cfg.max_model_len);
  const KVLayout layout = parse_layout(cfg.kv_layout);
  vocab = model->vocab_size();
  max_model_len = model->max_position();
  if (cfg.max_model_len > 0) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_model_len <= max_model_len,
                "engine: max_model_len {} exceeds the model's maximum of {} positions",
                cfg.max_model_len, max_model_len);
    max_model_len = cfg.max_model_len;
  }

  // KV cache sizing: budget bytes / bytes per page, after the weights and the activation
  // workspace are in place (a fraction is of the memory free then).
  const bool cuda = model->on_cuda();
  model->reserve(cfg.max_num_batched_tokens, cfg.max_num_seqs);
  int64_t budget = 0;
  if (cfg.kv_cache_memory.empty()) {
    st.free_memory_bytes = model->free_memory_bytes();
    budget = cuda ? MemoryBudget{true, 0.9, 0}.resolve(st.free_memory_bytes)
                  : std::min<int64_t>(int64_t(2) << 30, physical_memory_bytes() / 4);
  } else {
    const MemoryBudget mb = parse_memory_budget(cfg.kv_cache_memory);
    // Free memory is only asked for when needed (a fraction).
    if (mb.is_fraction) st.free_memory_bytes = model->free_memory_bytes();
    budget = mb.resolve(st.free_memory_bytes);
  }
  const int64_t per_page = model->kv_bytes_per_page(cfg.page_size);
  int64_t pages = pages_for_budget(budget, per_page);
  // More pages than every running request at full length could use would be wasted memory.
  const int64_t useful =
      int64_t(cfg.max_num_seqs) * ((max_model_len + cfg.page_size - 1) / cfg.page_size);
  pages = std::min(pages, std::max<int64_t>(useful, 1));
  kv_bytes = pages * per_page;
  model->allocate_kv(int(pages), cfg.page_size, layout);
  pool = std::make_unique<PagePool>(int(pages));
  sched = std::make_unique<Scheduler>(
      SchedulerConfig{cfg.page_size, cfg.max_num_batched_tokens, cfg.max_num_seqs}, *pool);
  eos = codec->eos_token_ids();
  setup_cache(per_page, cuda);
}

void Engine::Impl::setup_cache(int64_t kv_bytes_per_page, bool cuda) {
  if (cfg.enable_prefix_cache) {
    PrefixTreeOptions o;
    o.page_size = cfg.page_size;
    o.policy = std::make_shared<PinnedSessionPolicy>();  // LRU, pinned sessions last
    tree = std::make_unique<PrefixTree>(*pool, o);
    prefix_cache = std::make_unique<TreePrefixCache>(*tree);
    sched->set_prefix_cache(prefix_cache.get());
  }
  if (!cfg.enable_cascade && !cfg.cascade_force) return;
  CascadeCostModel cost;
  cost.num_layers = std::max(1, model->num_layers());
  cost.kv_bytes_per_token = double(kv_bytes_per_page) / cfg.page_size / cost.num_layers;
  if (model->attention_flops_per_row_token() > 0)
    cost.flops_per_row_token = model->attention_flops_per_row_token();
  // The cost model describes a GPU (one read of a shared page serves all its sharers). The CPU
  // attention reads the keys once per query row anyway, so there a level never pays: cascade
  // stays off on the CPU unless forced.
  const CascadeMode mode = cfg.cascade_force ? CascadeMode::Always
                           : cuda            ? CascadeMode::Auto
                                             : CascadeMode::Off;
  planner = std::make_unique<CascadePlanner>(cfg.page_size, mode, cost);
}

RequestId Engine::Impl::add(std::vector<int32_t> prompt, const SamplingParams& p) {
  p.validate();
  NC_CHECK_AS(ErrorKind::InvalidArgument, !prompt.empty(), "request: empty prompt");
  for (int32_t id : prompt) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, id >= 0 && id < vocab,
                "request: prompt token id {} outside the vocabulary [0, {})", id, vocab);
  }
  const int n = int(prompt.size());
  NC_CHECK_AS(ErrorKind::ContextLength, n < max_model_len,
              "request: prompt has {} tokens, the context is {} tokens", n, max_model_len);
  NC_CHECK_AS(ErrorKind::ContextLength, int64_t(n) + p.max_tokens <= max_model_len,
              "request: prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens", n,
              p.max_tokens, max_model_len);

  auto r = std::make_unique<Request>();
  r->seq.id = next_id;
  r->seq.num_prompt = n;
  r->seq.max_kv_tokens = n + p.max_tokens - 1;
  r->seq.tokens = std::move(prompt);
  r->params = p;
  r->rng.seed(p.seed ? *p.seed : seed_rng());
  r->detok = std::make_unique<IncrementalDetokenizer>(*codec, r->seq.tokens, p.skip_special_tokens);
  r->stop = std::make_unique<StopStringMatcher>(p.stop);
  r->masked_before_min = p.stop_token_ids;
  if (!p.ignore_eos)
    r->masked_before_min.insert(r->masked_before_min.end(), eos.begin(), eos.end());
  r->arrival = Clock::now();
  sched->add(&r->seq);  // throws when it could never fit in the KV cache
  requests.emplace(next_id, std::move(r));
  return next_id++;
}

void Engine::Impl::finish(Request& r, FinishReason reason) {
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
  sched->finish(&r.seq);  // pages go back at once
}

// The token at r.seq.tokens[index] has arrived (later placeholders may follow it).
void Engine::Impl::on_token(Request& r, int index, Clock::time_point now) {
  const SamplingParams& p = r.params;
  const int32_t tok = r.seq.tokens[size_t(index)];
  const int num_output = index + 1 - r.seq.num_prompt;
  r.new_ids.push_back(tok);
  r.touched = true;
  if (num_output == 1) r.first_token = now;
  r.last_token = now;
  ++st.num_generated_tokens;
  const bool is_eos = !p.ignore_eos && std::find(eos.begin(), eos.end(), tok) != eos.end();
  const bool is_stop_id =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok) != p.stop_token_ids.end();
  if (is_eos || is_stop_id) {  // their text is not part of the output
    finish(r, FinishReason::Stop);
    return;
  }
  const std::string text = r.detok->push(tok);
  // Stop strings count only once min_tokens are out.
  r.delta += r.stop->append(text, num_output >= p.min_tokens);
  if (r.stop->stopped()) {
    finish(r, FinishReason::Stop);
  } else if (num_output >= p.max_tokens || index + 1 >= max_model_len) {
    finish(r, FinishReason::Length);
  }
}

RequestOutput Engine::Impl::take_output(Request& r) {
  RequestOutput o;
  o.id = r.seq.id;
  o.new_token_ids = std::move(r.new_ids);
  o.text_delta = std::move(r.delta);
  o.finished = r.finished;
  o.finish_reason = r.reason;
  o.num_prompt_tokens = r.seq.num_prompt;
  // Tokens out so far: not a placeholder still being sampled (asynchronous scheduling).
  const int n = r.seq.num_known() - r.seq.num_prompt;
  o.num_completion_tokens = n;
  if (n >= 1) o.time_to_first_token_s = seconds(r.first_token - r.arrival);
  if (n >= 2) o.time_per_output_token_s = seconds(r.last_token - r.first_token) / (n - 1);
  r.new_ids.clear();
  r.delta.clear();
  r.touched = false;
  return o;
}

std::vector<RequestOutput> Engine::Impl::step() {
  Clock::time_point t0 = Clock::now();
  // Step n + 1 is queued before step n's tokens are taken: with device sampling the GPU then
  // runs it while the host does step n's bookkeeping and plans step n + 2.
  std::unique_ptr<LaunchedStep> next = launch_step();
  std::unique_ptr<LaunchedStep> done = std::move(in_flight);
  st.num_overlapped_steps += next && done;
  if (next && next->ids && cfg.async_scheduling) in_flight = std::move(next);
  // Device, host-prep and wall time so far, to the kind of the step that just completed (the
  // walls of all calls add up to the engine's wall time).
  auto account = [&](EngineStats::StepKind& kind) {
    const double dev = model->device_seconds(), prep = model->host_prep_seconds();
    kind.device_s += dev - device_s_seen;
    kind.model_prep_s += prep - prep_s_seen;
    device_s_seen = dev;
    prep_s_seen = prep;
    const Clock::time_point now = Clock::now();
    kind.wall_s += seconds(now - t0);
    t0 = now;
  };
  LaunchedStep* current = nullptr;
  try {
    for (LaunchedStep* s : {done.get(), next.get()}) {
      if (!s) continue;
      current = s;
      complete_step(*s);
      account(*s->kind);
    }
  } catch (...) {
    // The failing step's tokens are lost, and those of a synchronous step queued behind it: their
    // requests cannot go on. They finish as aborted (pages freed); the error propagates.
    abort_requests_of(*current);
    if (current == done.get() && next) abort_requests_of(*next);
    throw;
  }
  if (!done && !next && in_flight) account(*in_flight->kind);  // the first step of a run
#ifndef NDEBUG
  sched->check_invariants();
  if (tree) tree->check_invariants();
#endif
  std::vector<RequestOutput> outs;
  for (auto it = requests.begin(); it != requests.end();) {
    Request& r = *it->second;
    if (r.touched) outs.push_back(take_output(r));
    // A finished request stays while the step in flight still names it.
    const bool referenced = in_flight && r.last_step == in_flight->serial;
    it = r.finished && !referenced ? requests.erase(it) : std::next(it);
  }
  return outs;
}

std::unique_ptr<LaunchedStep> Engine::Impl::launch_step() {
  const auto t0 = Clock::now();
  const ScheduleResult sr = sched->schedule();
  if (sr.empty()) return nullptr;
  auto s = std::make_unique<LaunchedStep>();
  s->serial = next_step++;
  StepPlan& plan = s->plan;
  plan = build_step_plan(sr, cfg.page_size);
  if (planner) record_cascade(apply_cascade(plan, *planner));
  const auto t1 = Clock::now();
  st.schedule_s += seconds(t1 - t0);
  const size_t R = plan.sample_entries.size();
  if (device_sampling_applies(plan)) {
    // Only token ids come back: the host never sees the logits.
    std::vector<RowSampling> rows;
    for (int e : plan.sample_entries)
      rows.push_back(row_sampling(*requests.at(plan.entries[e].seq->id)));
    s->ids = model->forward_sample_async(plan.input, rows);
  } else {
    s->logits = model->forward(plan.input);
    NC_CHECK(s->logits.size() == R * size_t(vocab),
             "engine: model returned {} logits for {} rows of {}", s->logits.size(), R, vocab);
  }
  st.model_s += seconds(Clock::now() - t1);
  sched->commit(sr);
  ++st.num_steps;
  st.num_prompt_tokens_computed += plan.num_prefill_tokens;
  for (const StepEntry& e : plan.entries) requests.at(e.seq->id)->last_step = s->serial;
  // Sampled tokens that the next schedule() must already see: placeholders -1 - row, which the
  // model resolves on the device (ForwardInput::token_ids) and complete_step() on the host.
  const bool deferred = s->ids && cfg.async_scheduling;
  for (size_t k = 0; k < R; ++k) {
    Sequence& seq = *plan.entries[size_t(plan.sample_entries[k])].seq;
    s->token_index.push_back(deferred ? seq.num_tokens() : -1);
    if (deferred) seq.tokens.push_back(-1 - int32_t(k));
  }
  EngineStats::StepKind& k = plan.num_prefill_tokens ? st.prefill_steps : st.decode_steps;
  ++k.steps;
  k.tokens += plan.num_prefill_tokens + plan.num_decode_tokens;
  for (const StepEntry& e : plan.entries) {
    const int64_t n = e.num_new;
    k.kv_tokens += e.start + n;
    k.attn_pairs += n * e.start + n * (n + 1) / 2;
  }
  s->kind = &k;
  return s;
}

void Engine::Impl::complete_step(LaunchedStep& s) {
  const auto t0 = Clock::now();
  const StepPlan& plan = s.plan;
  std::vector<int32_t> toks;
  if (s.ids) {
    toks = s.ids->wait();
    NC_CHECK(toks.size() == plan.sample_entries.size(),
             "engine: model sampled {} tokens for {} rows", toks.size(),
             plan.sample_entries.size());
    st.num_device_sampled += int64_t(toks.size());
  }
  const auto t1 = Clock::now();
  st.model_s += seconds(t1 - t0);
  for (size_t k = 0; k < plan.sample_entries.size(); ++k) {
    Request& r = *requests.at(plan.entries[size_t(plan.sample_entries[k])].seq->id);
    // Finished (a stop, an abort) while this step ran: its token is dropped.
    if (r.finished) continue;
    const int32_t tok = s.ids ? toks[k] : host_sample(s, k, r);
    NC_CHECK(tok >= 0 && tok < vocab, "engine: sampled token {} outside the vocabulary", tok);
    int index = s.token_index[k];
    if (index < 0) {
      index = r.seq.num_tokens();
      r.seq.tokens.push_back(tok);
    } else {
      NC_CHECK(index < r.seq.num_tokens() && r.seq.tokens[size_t(index)] == -1 - int32_t(k),
               "engine: request {} lost the placeholder of its token {}", r.seq.id, index);
      r.seq.tokens[size_t(index)] = tok;
    }
    on_token(r, index, Clock::now());
  }
  st.sample_s += seconds(Clock::now() - t1);
}

void Engine::Impl::abort_requests_of(const LaunchedStep& s) {
  for (const StepEntry& e : s.plan.entries) {
    auto it = requests.find(e.seq->id);
    if (it != requests.end()) finish(*it->second, FinishReason::Abort);
  }
}

int32_t Engine::Impl::host_sample(LaunchedStep& s, size_t row, Request& r) {
  std::span<float> logits(s.logits.data() + row * size_t(vocab), size_t(vocab));
  // A request that another row's penalty brought to the host draws as the device would: its
  // tokens do not depend on its batch.
  if (draws_like_device(r)) return draw_token(logits, row_sampling(r));
  const std::span<const int32_t> all(r.seq.tokens);
  const std::span<const int32_t> masked = r.seq.num_output() < r.params.min_tokens
                                              ? std::span<const int32_t>(r.masked_before_min)
                                              : std::span<const int32_t>();
  return sample_token(logits, r.params, all.first(size_t(r.seq.num_prompt)),
                      all.subspan(size_t(r.seq.num_prompt)), masked, r.rng);
}

bool Engine::Impl::device_sampling_applies(const StepPlan& plan) const {
  if (plan.sample_entries.empty()) return false;
  for (int e : plan.sample_entries)
    if (!draws_like_device(*requests.at(plan.entries[e].seq->id))) return false;
  return true;
}

bool Engine::Impl::draws_like_device(const Request& r) const {
  if (!cfg.device_sampling || !model->can_sample_on_device()) return false;
  const SamplingParams& p = r.params;
  // Top-k / top-p / min-p are drawn on the device too; penalties need the host.
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    return false;
  // EOS / stop ids masked until min_tokens: the host sampler does that.
  return r.seq.num_output() >= p.min_tokens || r.masked_before_min.empty();
}

RowSampling Engine::Impl::row_sampling(Request& r) {
  const SamplingParams& p = r.params;
  const bool greedy = p.temperature == 0;
  // Greedy draws nothing, as on the host.
  return {greedy ? 0.0f : 1.0f / p.temperature, greedy ? 0 : r.rng(), p.top_k, p.top_p, p.min_p};
}

void Engine::Impl::record_cascade(const CascadeStats& cs) {
  CacheStats& c = st.cache;
  c.last_step_pages_per_level = cs.pages_per_level;
  c.last_step_kv_bytes_plain = cs.kv_bytes_plain;
  c.last_step_kv_bytes_cascade = cs.kv_bytes_cascade;
  c.kv_bytes_plain += cs.kv_bytes_plain;
  c.kv_bytes_cascade += cs.kv_bytes_cascade;
  c.cascade_steps += cs.num_levels > 1;
  c.max_levels = std::max(c.max_levels, cs.num_levels);
}

// ---- Engine ----

Engine::Engine(const EngineConfig& config, std::unique_ptr<StepModel> model,
               std::unique_ptr<TextCodec> codec)
    : impl_(std::make_unique<Impl>(config, std::move(model), std::move(codec))) {}

Engine::~Engine() = default;

RequestId Engine::add_request(const std::string& prompt, const SamplingParams& params) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, !prompt.empty(), "request: empty prompt");
  return impl_->add(impl_->codec->encode(prompt, true), params);
}

RequestId Engine::add_request(const std::vector<int32_t>& prompt_token_ids,
                              const SamplingParams& params) {
  return impl_->add(prompt_token_ids, params);
}

RequestId Engine::add_chat_request(const std::vector<ChatMessage>& messages,
                                   const SamplingParams& params) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, !messages.empty(), "chat request: no messages");
  static const std::set<std::string> kRoles = {"system", "user", "assistant", "tool"};
  for (const ChatMessage& m : messages) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, kRoles.count(m.role),
                "chat request: unknown role '{}' (system, user, assistant, tool)", m.role);
  }
  const std::string text = impl_->codec->apply_chat_template(messages, true);
  // The template writes the special tokens itself.
  return impl_->add(impl_->codec->encode(text, false), params);
}

std::vector<RequestOutput> Engine::step() {
  return impl_->step();
}

void Engine::set_session(RequestId id, const std::string& session) {
  auto it = impl_->requests.find(id);
  NC_CHECK_AS(ErrorKind::NotFound, it != impl_->requests.end(), "set_session: unknown request {}",
              id);
  Sequence& seq = it->second->seq;
  NC_CHECK(seq.status == SeqStatus::Waiting && seq.pages.empty(),
           "set_session: request {} is already running", id);
  if (!impl_->tree || session.empty()) return;
  const auto [entry, added] = impl_->sessions.try_emplace(session, int64_t(impl_->sessions.size()));
  seq.session = entry->second;
  impl_->tree->pin_session(seq.session, impl_->tree->now() + impl_->cfg.session_pin_seconds);
}

void Engine::abort(RequestId id) {
  auto it = impl_->requests.find(id);
  if (it == impl_->requests.end() || it->second->finished) return;
  impl_->finish(*it->second, FinishReason::Abort);
}

bool Engine::has_unfinished() const {
  if (impl_->in_flight) return true;  // its tokens come with the next step()
  for (const auto& [id, r] : impl_->requests) {
    if (!r->finished || r->touched) return true;
  }
  return false;
}

namespace {

template <typename Prompt>
std::vector<CompletionOutput> run_to_completion(Engine& engine, const std::vector<Prompt>& prompts,
                                                const SamplingParams& params) {
  std::map<RequestId, size_t> index;
  std::vector<CompletionOutput> results(prompts.size());
  try {
    for (size_t i = 0; i < prompts.size(); ++i) index[engine.add_request(prompts[i], params)] = i;
  } catch (...) {
    for (const auto& [id, i] : index) engine.abort(id);
    while (engine.has_unfinished()) engine.step();
    throw;
  }
  size_t done = 0;
  while (done < prompts.size()) {
    NC_CHECK(engine.has_unfinished(), "generate: the engine stopped with requests unfinished");
    for (RequestOutput& o : engine.step()) {
      auto it = index.find(o.id);
      if (it == index.end()) continue;
      CompletionOutput& c = results[it->second];
      c.id = o.id;
      c.token_ids.insert(c.token_ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      c.text += o.text_delta;
      if (o.finished) {
        c.finish_reason = o.finish_reason;
        c.time_to_first_token_s = o.time_to_first_token_s;
        c.time_per_output_token_s = o.time_per_output_token_s;
        ++done;
      }
    }
  }
  return results;
}

}  // namespace

std::vector<CompletionOutput> Engine::generate(const std::vector<std::string>& prompts,
                                               const SamplingParams& params) {
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& p : prompts) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, !p.empty(), "generate: empty prompt");
    ids.push_back(encode(p, true));
  }
  return generate(ids, params);
}

std::vector<CompletionOutput> Engine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                               const SamplingParams& params) {
  std::vector<CompletionOutput> out = run_to_completion(*this, prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) out[i].prompt_token_ids = prompts[i];
  return out;
}

std::vector<int32_t> Engine::encode(const std::string& text, bool add_special_tokens) const {
  return impl_->codec->encode(text, add_special_tokens);
}

std::string Engine::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->codec->decode(ids.data(), ids.size(), skip_special_tokens);
}

std::string Engine::apply_chat_template(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  return impl_->codec->apply_chat_template(messages, add_generation_prompt);
}

EngineStats Engine::stats() const {
  EngineStats s = impl_->st;
  s.page_size = impl_->cfg.page_size;
  s.total_pages = impl_->pool->num_pages();
  s.free_pages = impl_->pool->num_free();
  s.used_pages = impl_->pool->num_used();
  s.cached_pages = impl_->pool->num_cached();
  s.kv_cache_bytes = impl_->kv_bytes;
  s.weight_bytes = impl_->model->weight_bytes();
  s.workspace_bytes = impl_->model->workspace_bytes();
  s.device_s = impl_->model->device_seconds();
  s.num_graph_steps = impl_->model->num_graph_steps();
  s.max_model_len = impl_->max_model_len;
  s.num_running = impl_->sched->num_running();
  s.num_waiting = impl_->sched->num_waiting();
  s.num_preemptions = impl_->sched->num_preemptions();
  const PageUsage u = page_usage(*impl_->pool);
  s.cache.free_pages = u.free;
  s.cache.private_pages = u.private_used;
  s.cache.shared_pages = u.shared_used;
  s.cache.cached_only_pages = u.cached_only;
  if (impl_->tree) {
    const PrefixTreeStats t = impl_->tree->stats();
    s.cache.tree_pages = t.num_pages;
    s.cache.lookup_tokens = t.queried_tokens;
    s.cache.hit_tokens = t.hit_tokens;
    s.cache.hit_rate = t.hit_rate();
    s.cache.evicted_pages = t.evicted_pages;
  }
  return s;
}

const EngineConfig& Engine::config() const {
  return impl_->cfg;
}

}  // namespace nc
