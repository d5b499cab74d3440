// Engine (include/nanocascade/engine.h): set-up (KV cache sizing, prefix cache, cascade), the
// public calls, and the step recipe. The step loop's parts live in step_pipeline.cc (launching
// and completing steps, the step in flight), request_table.cc (the request lifecycle) and
// step_accounting.cc (statistics); generate() and warmup() in engine_generate.cc.
#include "nanocascade/engine.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "core/error.h"
#include "engine/engine_impl.h"
#include "engine/memory_plan.h"

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

KVLayout parse_layout(const std::string& s) {
  if (s == "NHD" || s == "nhd") return KVLayout::NHD;
  if (s == "HND" || s == "hnd") return KVLayout::HND;
  fail_as(ErrorKind::InvalidArgument, "kv layout '{}': expected NHD or HND", s);
}

void check_config(const EngineConfig& cfg) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.page_size >= 1 && cfg.page_size <= 256,
              "engine: page_size {} outside 1..256", cfg.page_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.grammar_compile_timeout_s > 0,
              "engine: grammar_compile_timeout_s must be > 0, got {}",
              cfg.grammar_compile_timeout_s);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_num_batched_tokens >= 1,
              "engine: max_num_batched_tokens must be >= 1, got {}", cfg.max_num_batched_tokens);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_num_seqs >= 1,
              "engine: max_num_seqs must be >= 1, got {}", cfg.max_num_seqs);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.max_model_len >= 0,
              "engine: max_model_len must be >= 0, got {}", cfg.max_model_len);
  NC_CHECK_AS(ErrorKind::InvalidArgument,
              cfg.tensor_parallel_size >= 1 && cfg.tensor_parallel_size <= 64,
              "engine: tensor_parallel_size {} outside 1..64", cfg.tensor_parallel_size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, cfg.nnodes >= 1 && cfg.node_rank == 0,
              "engine: nnodes {} node_rank {} (the engine is rank 0, on node 0; other nodes "
              "serve ranks: run_tensor_parallel_rank)",
              cfg.nnodes, cfg.node_rank);
  check_sparse_config(cfg);
}

// The text of EngineConfig::chat_template (a file), or an error naming it.
std::string read_chat_template(const EngineConfig& cfg) {
  std::ifstream f(cfg.chat_template, std::ios::binary);
  NC_CHECK_AS(ErrorKind::InvalidArgument, f.good(), "chat template '{}': cannot read the file",
              cfg.chat_template);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  NC_CHECK_AS(ErrorKind::InvalidArgument, !text.empty(), "chat template '{}': the file is empty",
              cfg.chat_template);
  return text;
}

}  // namespace

Engine::Impl::Impl(const EngineConfig& c, std::unique_ptr<StepModel> m,
                   std::unique_ptr<TextCodec> t)
    : cfg(c), model(std::move(m)), codec(std::move(t)) {
  NC_CHECK(model && codec, "engine: a model and a tokenizer are required");
  check_config(cfg);
  if (!cfg.chat_template.empty()) codec->set_chat_template_override(read_chat_template(cfg));
  host_kv_cache_bytes(cfg);  // more host tier than memory: fail before any work
  const KVLayout layout = parse_layout(cfg.kv_layout);
  vocab = model->vocab_size();
  max_model_len = resolve_max_model_len(cfg, *model);
  model->reserve(cfg.max_num_batched_tokens, cfg.max_num_seqs);
  const int64_t per_page = model->kv_bytes_per_page(cfg.page_size);
  const int64_t pages = allocate_kv_cache(per_page, layout);
  pool = std::make_unique<PagePool>(int(pages));
  streaming = make_streaming_window(cfg, max_model_len, *model);  // after the KV cache exists
  sched = std::make_unique<Scheduler>(
      SchedulerConfig{cfg.page_size, cfg.max_num_batched_tokens, cfg.max_num_seqs}, *pool);
  sched->set_streaming_window(streaming.get());
  requests = std::make_unique<RequestTable>(*codec, *sched, vocab, max_model_len, cfg.seed);
  requests->set_streaming_window(streaming.get());
  grammars = std::make_unique<GrammarCache>(*codec, vocab, cfg.grammar_compile_timeout_s);
  requests->set_grammars(grammars.get());
  NC_CHECK_AS(ErrorKind::Unsupported, cfg.sparse_budget == 0 || model->sparse_enabled(),
              "engine: sparse_budget {} but the model keeps no page bounds (sparse attention off "
              "in the model)",
              cfg.sparse_budget);
  requests->set_sparse_rule(
      SparseRule{cfg.sparse_budget > 0, cfg.sparse_budget,
                 int64_t(cfg.sparse_sink_pages) * cfg.page_size + cfg.sparse_window});
  setup_cache(per_page, model->on_cuda());
  accounting = std::make_unique<StepAccounting>(st, *model);
  pipeline = std::make_unique<StepPipeline>(
      StepPipelineParts{cfg, *model, *sched, planner.get(), *requests, *accounting, host.get()});
}

// KV cache sizing (kv_budget.h): the budget's pages, capped at what max_num_seqs full-length
// requests could use, after the weights and the activation workspace are in place (a fraction is
// of the memory free then).
int64_t Engine::Impl::allocate_kv_cache(int64_t bytes_per_page, KVLayout layout) {
  // The same plan `nanocascade memory` prints (memory_plan.h).
  const MemoryPlan plan = plan_memory(cfg, *model, max_model_len);
  NC_CHECK(plan.bytes_per_page == bytes_per_page, "engine: {} bytes per page planned, {} asked",
           plan.bytes_per_page, bytes_per_page);
  st.free_memory_bytes = plan.free_memory_bytes;
  const int64_t pages = plan.pages;
  kv_bytes = plan.kv_bytes;
  host_pages = plan.host_pages;
  model->allocate_kv(int(pages), cfg.page_size, layout);
  return pages;
}

void Engine::Impl::setup_cache(int64_t kv_bytes_per_page, bool cuda) {
  if (cfg.enable_prefix_cache) {
    PrefixTreeOptions o;
    o.page_size = cfg.page_size;
    o.policy = std::make_shared<PinnedSessionPolicy>();  // LRU, pinned sessions last
    setup_host_tier(o, kv_bytes_per_page);
    tree = std::make_unique<PrefixTree>(*pool, o);
    prefix_cache = std::make_unique<TreePrefixCache>(*tree);
    sched->set_prefix_cache(prefix_cache.get());
  }
  if (!cfg.enable_cascade && !cfg.cascade_force) return;
  const AttentionCost attention = model->attention_cost();
  CascadeCostModel cost;
  cost.num_layers = std::max(1, attention.num_layers);
  cost.kv_bytes_per_token = double(kv_bytes_per_page) / cfg.page_size / cost.num_layers;
  if (attention.flops_per_row_token > 0) cost.flops_per_row_token = attention.flops_per_row_token;
  // The cost model describes a GPU (one read of a shared page serves all its sharers). The CPU
  // attention reads the keys once per query row anyway, so there a level never pays: cascade
  // stays off on the CPU unless forced.
  const CascadeMode mode = cfg.cascade_force ? CascadeMode::Always
                           : cuda            ? CascadeMode::Auto
                                             : CascadeMode::Off;
  planner = std::make_unique<CascadePlanner>(cfg.page_size, mode, cost);
}

void Engine::Impl::setup_host_tier(PrefixTreeOptions& o, int64_t kv_bytes_per_page) {
  if (host_pages == 0) return;  // the plan's (memory_plan.h), as `nanocascade memory` prints
  model->allocate_host_kv(int(host_pages));
  host = std::make_unique<HostTier>(int(host_pages), kv_bytes_per_page);
  o.host = host.get();
  const HostReloadRule rule{kv_bytes_per_page, cfg.page_size, double(model->memory().weight_bytes),
                            model->on_cuda()};
  o.reload_worth = [rule](int n) { return rule.worth(n); };
}

void Engine::Impl::check_invariants() const {
#ifdef NDEBUG
  if (!cfg.check_invariants) return;
#endif
  sched->check_invariants();
  if (tree) tree->check_invariants();
  if (model->sparse_enabled()) model->check_page_bounds(pages_with_contents());
}

void Engine::Impl::emit_memory_event() {
  memory_hooks.emit(MemoryEventSources{*pool, *sched, *model, st.cache.last_step_pages_per_level,
                                       cfg.page_size, kv_bytes / pool->num_pages(), kv_bytes,
                                       host.get()});
}

// ---- Engine ----

Engine::Engine(const EngineConfig& config, std::unique_ptr<StepModel> model,
               std::unique_ptr<TextCodec> codec)
    : impl_(std::make_unique<Impl>(config, std::move(model), std::move(codec))) {}

Engine::~Engine() = default;

void Engine::Impl::check_serving() const {
  NC_CHECK_AS(ErrorKind::Internal, pipeline->kv_failure().empty(),
              "engine: {}; the prefix cache may name pages whose K/V never arrived, so it takes "
              "no requests any more (restart the engine)",
              pipeline->kv_failure());
}

RequestId Engine::add_request(const std::string& prompt, const SamplingParams& params) {
  impl_->check_serving();
  NC_CHECK_AS(ErrorKind::InvalidArgument, !prompt.empty(), "request: empty prompt");
  return impl_->requests->add(impl_->codec->encode_plain(prompt, true), params);
}

RequestId Engine::add_request(const std::vector<int32_t>& prompt_token_ids,
                              const SamplingParams& params) {
  impl_->check_serving();
  return impl_->requests->add(prompt_token_ids, params);
}

std::vector<RequestId> Engine::add_requests(const std::vector<int32_t>& prompt_token_ids,
                                            const SamplingParams& params, int n) {
  impl_->check_serving();
  NC_CHECK_AS(ErrorKind::InvalidArgument, n >= 1, "request: n must be >= 1, got {}", n);
  std::vector<RequestId> ids;
  try {
    ids.push_back(impl_->requests->add(prompt_token_ids, params));
    for (int i = 1; i < n; ++i) {
      SamplingParams p = params;
      if (p.seed) p.seed = *p.seed + uint64_t(i);
      p.prompt_logprobs = -1;
      const RequestId id = impl_->requests->add(prompt_token_ids, p);
      ids.push_back(id);
      // It waits while the first one computes the prompt (Scheduler: in-batch prefix sharing).
      impl_->requests->at(id).seq.waits_for = ids[0];
    }
  } catch (...) {
    for (RequestId id : ids) abort(id);
    throw;
  }
  return ids;
}

RequestId Engine::add_chat_request(const std::vector<ChatMessage>& messages,
                                   const SamplingParams& params) {
  impl_->check_serving();
  NC_CHECK_AS(ErrorKind::InvalidArgument, !messages.empty(), "chat request: no messages");
  static const std::set<std::string> kRoles = {"system", "user", "assistant", "tool"};
  for (const ChatMessage& m : messages) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, kRoles.count(m.role),
                "chat request: unknown role '{}' (system, user, assistant, tool)", m.role);
  }
  return impl_->requests->add(encode_chat(messages, true), params);
}

void Engine::compile_grammar(const StructuredOutput& s) const {
  impl_->grammars->compile(s);
}

std::vector<RequestOutput> Engine::step() {
  Impl& e = *impl_;
  if (!e.pipeline->kv_failure().empty()) {
    // An engine whose KV cache is no longer trusted runs no step: what it still holds finishes
    // as aborted (pages freed), and then it holds nothing (has_unfinished() is false).
    e.requests->abort_all();
    e.pipeline->drop_in_flight();
    return e.requests->take_outputs(std::nullopt);
  }
  e.accounting->begin_call();
  // Schedule and launch step n + 1 before step n's tokens are taken: with device sampling the
  // device runs it while the host does step n's bookkeeping (step_pipeline.h).
  StepsToComplete steps = e.pipeline->launch_next();
  // Step n's tokens (and step n + 1's when it did not go into flight) to their requests.
  e.pipeline->complete(steps);
  e.check_invariants();
  e.emit_memory_event();
  // Outputs of the requests that got tokens or finished; finished requests go unless the step
  // in flight names them.
  return e.requests->take_outputs(e.pipeline->in_flight_serial());
}

void Engine::set_session(RequestId id, const std::string& session) {
  Request* r = impl_->requests->find(id);
  NC_CHECK_AS(ErrorKind::NotFound, r != nullptr, "set_session: unknown request {}", id);
  Sequence& seq = r->seq;
  NC_CHECK(seq.status == SeqStatus::Waiting && seq.pages.empty(),
           "set_session: request {} is already running", id);
  if (!impl_->tree || session.empty()) return;
  const auto [entry, added] = impl_->sessions.try_emplace(session, int64_t(impl_->sessions.size()));
  seq.session = entry->second;
  impl_->tree->pin_session(seq.session, impl_->tree->now() + impl_->cfg.session_pin_seconds);
}

void Engine::abort(RequestId id) {
  Request* r = impl_->requests->find(id);
  if (r == nullptr || r->finished) return;
  impl_->requests->finish(*r, FinishReason::Abort);
}

std::string Engine::health_error() {
  if (!impl_->pipeline->kv_failure().empty()) return impl_->pipeline->kv_failure();
  return impl_->model->health_error();
}

bool Engine::has_unfinished() const {
  // The step in flight's tokens come with the next step().
  return impl_->pipeline->has_in_flight() || impl_->requests->has_unfinished();
}

std::vector<int32_t> Engine::encode(const std::string& text, bool add_special_tokens,
                                    bool parse_special) const {
  if (!parse_special) return impl_->codec->encode_plain(text, add_special_tokens);
  return impl_->codec->encode(text, add_special_tokens);
}

std::vector<int32_t> Engine::encode_chat(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt) const {
  return impl_->codec->encode_chat(messages, add_generation_prompt);
}

namespace {

// The final message may be any role's, as in Hugging Face's and vLLM's: it must have text.
void check_prompt_options(const ChatPromptOptions& o, bool has_messages) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, !(o.continue_final_message && o.add_generation_prompt),
              "continue_final_message and add_generation_prompt cannot both be true");
  NC_CHECK_AS(ErrorKind::InvalidArgument, !o.continue_final_message || has_messages,
              "continue_final_message needs a final message to continue");
}

// The final message's text the prompt continues: its content, or its last text part's.
std::string final_text(const nlohmann::ordered_json& message) {
  const auto c = message.find("content");
  if (c != message.end() && c->is_string()) return c->get<std::string>();
  if (c != message.end() && c->is_array())
    for (auto p = c->rbegin(); p != c->rend(); ++p)
      if (p->is_object() && p->contains("text") && (*p)["text"].is_string())
        return (*p)["text"].get<std::string>();
  return "";
}

}  // namespace

ChatPrompt Engine::chat_prompt(const std::vector<ChatMessage>& messages,
                               const ChatPromptOptions& options) const {
  check_prompt_options(options, !messages.empty());
  RenderedChat chat = impl_->codec->render_chat(messages, options.add_generation_prompt);
  if (options.continue_final_message) continue_final_message(chat, messages.back().content);
  std::vector<int32_t> ids = impl_->codec->encode_rendered(chat);
  return ChatPrompt{std::move(chat.text), std::move(ids)};
}

namespace {
nlohmann::ordered_json parse_chat_json(const std::string& text, const char* what) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail_as(ErrorKind::InvalidArgument, "chat {}: not valid JSON: {}", what, e.what());
  }
}
}  // namespace

ChatPrompt Engine::chat_prompt_json(const std::string& messages_json, const std::string& tools_json,
                                    const ChatPromptOptions& options) const {
  const nlohmann::ordered_json messages = parse_chat_json(messages_json, "messages");
  const nlohmann::ordered_json* last =
      messages.is_array() && !messages.empty() && messages.back().is_object() ? &messages.back()
                                                                              : nullptr;
  check_prompt_options(options, last != nullptr);
  RenderedChat chat = impl_->codec->render_chat_json(
      messages, parse_chat_json(tools_json, "tools"), options.add_generation_prompt,
      parse_chat_json(options.template_kwargs_json, "template kwargs"));
  if (options.continue_final_message) continue_final_message(chat, final_text(*last));
  std::vector<int32_t> ids = impl_->codec->encode_rendered(chat);
  return ChatPrompt{std::move(chat.text), std::move(ids)};
}

std::string Engine::chat_template_text(bool with_tools) const {
  return impl_->codec->chat_template_text(with_tools);
}

int Engine::vocab_size() const {
  return impl_->vocab;
}

std::string Engine::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->codec->decode(ids.data(), ids.size(), skip_special_tokens);
}

std::string Engine::apply_chat_template(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  return impl_->codec->apply_chat_template(messages, add_generation_prompt);
}

void Engine::add_memory_hook(std::shared_ptr<MemoryHook> hook) {
  impl_->memory_hooks.add(std::move(hook));
}

EngineStats Engine::stats() const {
  EngineStats s = impl_->st;
  s.page_size = impl_->cfg.page_size;
  s.total_pages = impl_->pool->num_pages();
  s.free_pages = impl_->pool->num_free();
  s.used_pages = impl_->pool->num_used();
  s.cached_pages = impl_->pool->num_cached();
  s.kv_cache_bytes = impl_->kv_bytes;
  s.kv_cache_dtype = impl_->model->kv_cache_dtype();
  s.kv_bytes_per_token = impl_->model->kv_bytes_per_page(impl_->cfg.page_size) / s.page_size;
  const ModelMemory memory = impl_->model->memory();
  s.weight_bytes = memory.weight_bytes;
  s.weight_dtype = impl_->model->weight_dtype();
  s.workspace_bytes = memory.workspace_bytes;
  const ModelTimings timings = impl_->model->timings();
  s.device_s = timings.device_s;
  s.num_graph_steps = timings.graph_steps;
  const SparseCounts sparse = impl_->model->sparse_counts();
  s.num_sparse_pages_read = sparse.pages_read;
  s.num_sparse_pages_skipped = sparse.pages_skipped;
  s.num_kernel_compiles = timings.kernel_builds.compiles;
  s.kernel_compile_s = timings.kernel_builds.compile_s;
  s.num_kernel_cache_hits = timings.kernel_builds.cache_hits;
  s.max_model_len = impl_->max_model_len;
  s.num_running = impl_->sched->num_running();
  s.num_waiting = impl_->sched->num_waiting();
  s.num_preemptions = impl_->sched->num_preemptions();
  const PageUsage u = page_usage(*impl_->pool);
  s.cache.free_pages = u.free;
  s.cache.private_pages = u.private_used;
  s.cache.shared_pages = u.shared_used;
  s.cache.cached_only_pages = u.cached_only;
  const PagePoolCounters& moved = impl_->pool->counters();
  s.cache.pages_allocated = moved.allocated;
  s.cache.pages_freed = moved.freed;
  s.cache.pages_cached = moved.cached;
  s.cache.pages_evicted = moved.evicted;
  s.cache.pages_reloaded = moved.reloaded;
  s.cache.pages_restored = moved.restored;
  s.streaming.peak_request_pages = impl_->sched->peak_request_pages();
  if (const StreamingWindow* w = impl_->streaming.get()) {
    s.streaming.window_tokens = w->config().window;
    s.streaming.sink_pages = w->config().sink_pages;
    s.streaming.page_bound = w->max_decode_pages();
    const StreamingCounters& c = w->counters();
    s.streaming.evictions = c.evictions;
    s.streaming.evicted_tokens = c.evicted_tokens;
    s.streaming.evicted_pages = c.evicted_pages;
    s.streaming.shifted_pages = c.shifted_pages;
  }
  if (impl_->tree) {
    const PrefixTreeStats t = impl_->tree->stats();
    s.cache.tree_pages = t.num_pages;
    s.cache.lookup_tokens = t.queried_tokens;
    s.cache.hit_tokens = t.hit_tokens;
    s.cache.hit_rate = t.hit_rate();
    s.cache.evicted_pages = t.evicted_pages;
    if (impl_->host) s.host = host_tier_stats(*impl_->host, t);
  }
  return s;
}

const EngineConfig& Engine::config() const {
  return impl_->cfg;
}

}  // namespace nc
