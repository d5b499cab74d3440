// nanocascade's public C++ API: an Engine that serves many requests at once with continuous
// batching over a paged KV cache.
//
//   nc::Engine engine(nc::EngineConfig{});            // the embedded SmolLM2 on the CPU
//   nc::SamplingParams sp; sp.temperature = 0; sp.max_tokens = 64;
//   auto outs = engine.generate({"Hello!"}, sp);       // runs to completion
//
// or step by step: add_request(...) then step() until !has_unfinished(), streaming each
// RequestOutput's text_delta. Bad input (empty prompt, bad sampling parameters, a prompt longer
// than the context) throws nc::Error from add_request; the engine keeps serving the others.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nanocascade/chat_message.h"  // nc::ChatMessage {role, content}
#include "nanocascade/memory_hooks.h"  // nc::MemoryHook, nc::MemoryStepEvent
#include "nanocascade/stats.h"         // nc::EngineStats

namespace nc {

class StepModel;
class TextCodec;

using RequestId = int64_t;

// Structured output (docs/server.md): the output is forced, token by token, to match a grammar
// compiled against the model's vocabulary (xgrammar). Json: any JSON value (OpenAI's
// json_object); JsonSchema: JSON valid for the schema in `spec` (strict); Regex: text matching
// the regular expression `spec`; Grammar: an EBNF grammar (GBNF style, root rule "root");
// StructuralTag: xgrammar's structural tag JSON (how enforced tool calls are expressed). The
// request finishes ("stop") when the grammar is complete and the model ends its turn.
struct StructuredOutput {
  enum class Kind : uint8_t { None, Json, JsonSchema, Regex, Grammar, StructuralTag };
  Kind kind = Kind::None;
  std::string spec;
  bool active() const { return kind != Kind::None; }
};
const char* structured_kind_name(StructuredOutput::Kind k);  // "json", "json_schema", ...

struct SamplingParams {
  float temperature = 1.0f;         // 0 (or below 1e-5) = greedy (argmax, ties to the lowest id)
  int top_k = -1;                   // -1 = off; else >= 1
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; 1 = off; on prompt and output tokens
  float presence_penalty = 0.0f;    // [-2, 2]; on output tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; on output tokens
  std::optional<uint64_t> seed;     // per-request RNG: same seed, same tokens, whatever the batch
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop;  // stop strings: matched on the text, not emitted
  int max_tokens = 16;            // >= 1
  int min_tokens = 0;             // EOS and stop tokens are masked until this many
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  // Log-probabilities (docs/server.md), taken from the model's raw logits: before logit_bias,
  // temperature, penalties and the top-k/top-p/min-p filters (as vLLM returns by default).
  // -1 = off; k in [0, 20]: each output token's log-probability and the k most likely tokens.
  int logprobs = -1;
  // -1 = off; k in [0, 20]: the same for every prompt token after the first. Such a request
  // computes its whole prompt (the prefix cache gives it nothing: cached tokens have no logits).
  int prompt_logprobs = -1;
  // (token id, bias in [-100, 100]) added to the logits before sampling (OpenAI's logit_bias).
  std::vector<std::pair<int32_t, float>> logit_bias;
  StructuredOutput structured;  // none by default
  // Sparse decode attention for this request (EngineConfig::sparse_budget, docs/long_context.md):
  // -1 = the engine's setting; 0 = dense; N > 0 = a token budget of N (the engine must have
  // sparse attention enabled, i.e. EngineConfig::sparse_budget > 0, so page bounds are kept).
  int sparse_budget = -1;

  // Throws nc::Error naming the bad parameter.
  void validate() const;
};

enum class FinishReason : uint8_t { None, Stop, Length, Abort };
const char* finish_reason_name(FinishReason r);  // "", "stop", "length", "abort"

struct EngineConfig {
  // A .gguf file or a Hugging Face folder; empty = the embedded SmolLM2-135M-Instruct (Q4_1).
  std::string model;
  // "auto": weights from the checkpoint. "dummy": seeded random weights from the config alone
  // (`model` is then a config.json file, a folder with one, or a .gguf); for benchmarks at real
  // shapes. Such a model has no tokenizer: text is token ids written as numbers ("1 2 3").
  std::string load_format = "auto";
  uint64_t dummy_seed = 0;
  std::string backend = "cpu";    // "cpu" | "cuda"
  int page_size = 16;             // tokens per KV page, 1..256
  std::string kv_layout = "NHD";  // "NHD" | "HND"
  // The KV cache's element type (src/kv/kv_dtype.h, docs/memory.md): "auto" (the backend's:
  // float32 on CPU, bf16 on CUDA), "bf16" (CUDA) or "fp8" (e4m3 codes, one byte a value, static
  // per-tensor K/V scales of 1.0: the same memory holds twice the tokens of bf16).
  std::string kv_cache_dtype = "auto";
  // Linear layers' weights (docs/memory.md "FP8 weights"): "auto" (as the checkpoint stores
  // them: FP8 for an FP8 checkpoint), "none" (FP8 checkpoints dequantised) or "fp8" (e4m3, one
  // scale per output channel, per-token dynamic activation scales; quantised at load from any
  // checkpoint). Embeddings, norms and the LM head stay in the backend's dtype.
  std::string quantization = "auto";
  // Tensor parallelism (docs/models.md, "Tensor parallelism"): the model split over this many
  // ranks (its heads, KV heads and intermediate size must split), each with its shard of the
  // weights and of the KV cache. 1: off. The ranks are threads of this process on the cpu
  // backend with one node and no dist_init_addr; otherwise processes (one per GPU on cuda, over
  // NCCL), rank 0 being this engine and the others started with run_tensor_parallel_rank().
  int tensor_parallel_size = 1;
  // Ranks as processes (docs/models.md): the machines in the group (tensor_parallel_size ranks,
  // the same number on each), this machine's index, and rank 0's "host:port", where every other
  // rank connects (vLLM's and SGLang's --nnodes, --node-rank, --dist-init-addr).
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;
  // Bytes ("2GiB", "512MB", "1000000") or a fraction of the device memory free once the
  // weights and the activation workspace are allocated ("0.9"; physical memory on CPU).
  // Empty = "0.9" on CUDA, min(2 GiB, 25% of RAM) on CPU. Either way the pool holds at most the
  // pages max_num_seqs requests at max_model_len tokens use (src/engine/kv_budget.h); on CPU its
  // memory becomes resident only as pages are written.
  std::string kv_cache_memory;
  // The prefix cache's host-memory tier (docs/memory.md): bytes ("8GiB") or a fraction of the
  // machine's physical memory ("0.25") of host memory (pinned on CUDA) that cached pages evicted
  // from the device move to, and prefix hits copy back from. Empty or "0": off. More than the
  // machine's physical memory is an error before the model loads.
  std::string host_kv_cache;
  // A Jinja chat template file used instead of the model's own (empty: the model's); for models
  // whose checkpoint has none or a wrong one. Unreadable or empty: an error naming the file.
  std::string chat_template;
  int max_num_batched_tokens = 2048;  // token budget of one step (prefill chunks + decodes)
  int max_num_seqs = 256;             // running requests at most
  int max_model_len = 0;              // 0 = the model's max position
  uint64_t seed = 0;                  // seeds requests that give no seed of their own
  // Prefix cache and cascade attention (docs/cascade.md).
  bool enable_prefix_cache = true;  // reuse the KV pages of cached prompt prefixes
  bool enable_cascade = true;       // shared prefixes read once per step where the cost model says
  bool cascade_force = false;       // every shared prefix gets its level (tests, benchmarks)
  // A session's cached pages (set_session) are evicted after all others for this long after
  // its last request.
  double session_pin_seconds = 600;
  // CUDA graphs for decode-only steps (CUDA backend): batches up to graph_max_batch are padded
  // to a bucket (1, 2, 4, 8, 16, 32, 48, ...) whose graph is captured once and replayed.
  bool enable_cuda_graphs = true;
  int graph_max_batch = 512;  // nano-vLLM captures up to 512 too
  // Sample with the backend (on the GPU for CUDA; the CPU backend runs the same draw) when no
  // request of a step uses penalties or min_tokens masking (temperature, top-k, top-p and min-p
  // are drawn there): only token ids come back to the host. Greedy picks the same tokens as the
  // host sampler; seeded sampling is reproducible but draws other values than the host sampler
  // would (same distribution), the same on every backend.
  bool device_sampling = true;
  // Asynchronous scheduling (with device sampling): step n + 1 is scheduled and queued while
  // step n runs, its input ids taken on the device from step n's samples, so the GPU does not
  // wait for the host between steps. A request's tokens then come out one step() later, and a
  // request that stops on EOS or a stop string has computed one token more than it returns.
  bool async_scheduling = true;
  // Checks the page, prefix-tree and host-tier invariants after every step (docs/architecture.md,
  // "Invariants"); debug builds always do. For tests and debugging: it walks every page.
  bool check_invariants = false;
  // Long contexts (docs/long_context.md). Query-aware sparse decode attention (Quest): 0 = off;
  // N > 0 = page bounds are kept for every page, and a decode request whose own KV (the tokens
  // not in a shared cascade level) exceeds N tokens reads only its sink pages, its most recent
  // sparse_window tokens and the pages with the highest score bounds for its query, N tokens in
  // all; the first sparse_dense_layers layers stay dense (as Quest's do). A budget below
  // sparse_sink_pages * page_size + sparse_window is an error.
  int sparse_budget = 0;
  int sparse_sink_pages = 1;
  int sparse_window = 128;
  int sparse_dense_layers = 2;
  // Per KV head (Quest's granularity, docs/sparse.md): each KV head of a request keeps its own
  // pages by its own query heads' bounds (the same budget per head). Needs kv_layout "HND" (an
  // error otherwise); off: one page list per request for all heads (the only choice with NHD).
  bool sparse_per_head = false;
  // Streaming window (StreamingLLM): 0 = off; N > 0 = every request keeps its first
  // streaming_sink_pages pages and its most recent N tokens (page-rounded); the pages between
  // are freed and the kept keys re-rotated to their positions within the cache, so an endless
  // stream runs in bounded memory.
  int streaming_window = 0;
  int streaming_sink_pages = 1;
  // Structured output: the longest a grammar may take to compile before its request is refused
  // (the compilation goes on in the background and its result is cached).
  double grammar_compile_timeout_s = 5.0;

  static std::string default_model_path();
};

// A token's log-probability and the most likely tokens at its position (SamplingParams::logprobs).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;                           // -inf where the model gives the token none
  std::vector<std::pair<int32_t, float>> top;  // (id, logprob), most likely first (ties: lower id)
};

struct RequestOutput {
  RequestId id = 0;
  std::vector<int32_t> new_token_ids;  // generated this step
  std::vector<TokenLogprob> logprobs;  // one per new token when SamplingParams::logprobs >= 0
  // Prompt tokens 1..P-1 (the first has no log-probability) when prompt_logprobs >= 0, in the
  // output with the first generated token (or the final one).
  std::vector<TokenLogprob> prompt_logprobs;
  std::string text_delta;  // new text (never half a UTF-8 character)
  bool finished = false;
  FinishReason finish_reason = FinishReason::None;
  // Finished on one of SamplingParams::stop: that string (empty otherwise; vLLM's stop_reason,
  // Anthropic's stop_sequence).
  std::string stop_string;
  // Finished on one of SamplingParams::stop_token_ids (not an EOS id): that id, else -1 (vLLM's
  // stop_reason then).
  int32_t stop_token_id = -1;
  // Aborted (FinishReason::Abort) for a fault of the request itself: what it was (a structured
  // output whose grammar admits no next token). Empty for other aborts.
  std::string abort_reason;
  int num_prompt_tokens = 0;
  int num_completion_tokens = 0;
  double time_to_first_token_s = 0;    // from add_request to the first token (0 until then)
  double time_per_output_token_s = 0;  // mean gap between output tokens after the first
};

// What generate() returns per prompt, in the prompts' order.
struct CompletionOutput {
  RequestId id = 0;
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenLogprob> logprobs;         // per token of token_ids, when asked
  std::vector<TokenLogprob> prompt_logprobs;  // prompt tokens 1..P-1, when asked
  FinishReason finish_reason = FinishReason::None;
  std::string stop_string;     // as RequestOutput's
  int32_t stop_token_id = -1;  // as RequestOutput's
  std::string abort_reason;    // as RequestOutput's
  double time_to_first_token_s = 0;
  double time_per_output_token_s = 0;

  // Adds one step's output of this request (its new tokens and text; when it is the final one,
  // the finish reason and timings). Returns whether the request finished.
  bool append(const RequestOutput& o);
};

// A chat prompt: the text the template rendered and its token ids.
struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
};

// How a chat prompt ends, and what more its template reads.
struct ChatPromptOptions {
  bool add_generation_prompt = true;  // the header of the assistant's turn
  // Leave the last message (usually an assistant's; it must have text) open, so that the output
  // continues it (Hugging Face's and vLLM's continue_final_message; Anthropic's prefill). Not
  // with add_generation_prompt.
  bool continue_final_message = false;
  // More variables for the template (a JSON object's text, e.g. {"enable_thinking": false};
  // "null" for none). Only the JSON chat (chat_prompt_json) takes them.
  std::string template_kwargs_json = "null";
};

class Engine {
 public:
  // Loads the model and tokenizer named by the config and sizes the KV cache.
  explicit Engine(const EngineConfig& config);
  // Serves a given model and text codec (used by tests with fake models).
  Engine(const EngineConfig& config, std::unique_ptr<StepModel> model,
         std::unique_ptr<TextCodec> codec);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queue a request; throws nc::Error for bad input (and queues nothing). A text prompt is
  // ordinary text: special-token texts in it ("<|im_start|>") stay text (encode it with
  // parse_special and pass the ids to read them as control tokens). Chat messages' contents are
  // always text; only the template's own markers become control tokens.
  RequestId add_request(const std::string& prompt, const SamplingParams& params);
  RequestId add_request(const std::vector<int32_t>& prompt_token_ids, const SamplingParams& params);
  RequestId add_chat_request(const std::vector<ChatMessage>& messages,
                             const SamplingParams& params);
  // n requests for one prompt (OpenAI's n / best_of): the first computes the prompt; the others
  // wait for its prefill and take its pages from the prefix cache (all but the last partial
  // page), so the prompt is computed once. Choice i > 0 draws with seed + i when a seed is given
  // and has no prompt_logprobs (the first carries them). Throws as add_request, queuing nothing.
  std::vector<RequestId> add_requests(const std::vector<int32_t>& prompt_token_ids,
                                      const SamplingParams& params, int n);

  // Compiles a structured-output grammar (cached by kind and text) or finds it compiled; may be
  // called from any thread, and is what add_request does first for a structured request. Throws
  // nc::Error (InvalidArgument) naming the problem when it does not compile, or does not within
  // EngineConfig::grammar_compile_timeout_s.
  void compile_grammar(const StructuredOutput& s) const;

  // Runs one step: outputs for every request that produced tokens or finished in it. The step
  // recipe (schedule, launch, complete the step in flight, outputs) is in engine.cc.
  std::vector<RequestOutput> step();
  // Runs the work that would otherwise land in the first measured steps: one short request (a
  // prefill step, then decode steps), then, where the model uses CUDA graphs, one decode step at
  // each graph batch size (1, 2, 4, 8, 16, 32, 48, ... up to min(graph_max_batch,
  // max_num_seqs)), so that every graph is captured. Call it on an idle engine (it throws
  // nc::Error while requests are queued or running). It leaves no request and no page behind:
  // its requests run to completion (nothing stays in flight) and bypass the prefix cache, so
  // every page is free again and the cache is as before. Its steps and tokens do count in
  // stats(); request ids continue after those it used.
  void warmup();
  // Finishes a request (reason abort); its output comes with the next step(). Unknown or
  // finished ids are ignored.
  void abort(RequestId id);
  // Marks a waiting request as part of a conversation (an HTTP X-Session-Id): the pages its
  // prompt matches and the pages it leaves in the prefix cache are evicted after all pages of
  // unpinned requests, for session_pin_seconds. No effect without the prefix cache.
  void set_session(RequestId id, const std::string& session);
  bool has_unfinished() const;
  // "" while the model can run steps; else why not (a tensor-parallel rank failed or went
  // away, noticed without a step; a host-tier KV copy failed). Call it from the thread that
  // calls step().
  std::string health_error();

  // Runs the given prompts to completion (with any already queued requests).
  std::vector<CompletionOutput> generate(const std::vector<std::string>& prompts,
                                         const SamplingParams& params);
  std::vector<CompletionOutput> generate(const std::vector<std::vector<int32_t>>& prompts,
                                         const SamplingParams& params);

  // Text helpers with the engine's tokenizer. encode parses special-token texts in text as
  // Hugging Face's tokenizer(text) does unless parse_special is false (then all is text).
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true,
                              bool parse_special = true) const;
  // The chat prompt's ids as add_chat_request makes them (contents are text, markers tokens).
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt = true) const;
  // The chat prompt rendered once: its text (the server reads the output format from it) and
  // its ids, as encode_chat makes them. Throws nc::Error (InvalidArgument) for options that do
  // not fit the messages (continue_final_message with no final text).
  ChatPrompt chat_prompt(const std::vector<ChatMessage>& messages,
                         const ChatPromptOptions& options = {}) const;
  // OpenAI-style chat (TextCodec::render_chat_json): messages and tools as JSON text (a JSON
  // array each; tools "null" for none; key order kept), rendered once by the model's Jinja
  // template: the prompt's text and its ids.
  ChatPrompt chat_prompt_json(const std::string& messages_json, const std::string& tools_json,
                              const ChatPromptOptions& options = {}) const;
  // The Jinja chat template render_chat_json uses ("" when none; TextCodec::chat_template_text).
  std::string chat_template_text(bool with_tools) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const;
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true) const;

  // Registers a hook called once at the end of every step() call with the step's memory event
  // (nanocascade/memory_hooks.h). A hook that throws is removed; step() goes on.
  void add_memory_hook(std::shared_ptr<MemoryHook> hook);

  EngineStats stats() const;
  const EngineConfig& config() const;
  int vocab_size() const;  // token ids are in [0, vocab_size())

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Rank `rank` (1 <= rank < tensor_parallel_size) of a tensor-parallel group whose rank 0 is an
// Engine made from the same config (another process, on this machine or another): loads this
// rank's shard, joins the group at config.dist_init_addr and runs rank 0's steps until rank 0
// stops it (returns) or the group fails (throws nc::Error naming the failed rank).
void run_tensor_parallel_rank(const EngineConfig& config, int rank);

}  // namespace nc
