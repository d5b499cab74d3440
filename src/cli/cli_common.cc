#include "cli/cli_common.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "backend/cpu/cpu_matmul.h"

namespace nc::cli {

namespace {
std::vector<std::string>& stored_command_line() {
  static std::vector<std::string> line;
  return line;
}
}  // namespace

void set_command_line(int argc, char** argv) {
  stored_command_line().assign(argv, argv + argc);
}

const std::vector<std::string>& command_line() {
  return stored_command_line();
}

CLI::Option* repeatable(CLI::Option* opt) {
  return opt->expected(1)->allow_extra_args(false)->multi_option_policy(
      CLI::MultiOptionPolicy::TakeAll);
}

namespace {

// Sparse decode attention (Quest; docs/long_context.md).
void add_sparse_flags(CLI::App& app, EngineConfig& cfg) {
  app.add_option("--sparse-budget", cfg.sparse_budget,
                 "sparse decode attention: each decode request reads at most this many KV tokens "
                 "per layer (sinks, recent window, then the pages of highest score bound); 0: off")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  app.add_option("--sparse-sink-pages", cfg.sparse_sink_pages,
                 "sparse attention: first pages always read (attention sinks)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  app.add_option("--sparse-window", cfg.sparse_window,
                 "sparse attention: most recent tokens always read")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  app.add_flag("--sparse-per-head", cfg.sparse_per_head,
               "sparse attention: each KV head keeps its own pages by its own query heads' bounds "
               "(Quest's granularity); needs --kv-layout HND (NHD: one page list per request)");
  app.add_option("--sparse-dense-layers", cfg.sparse_dense_layers,
                 "sparse attention: the first layers stay dense")
      ->check(kNonNegativeInt)
      ->capture_default_str();
}

}  // namespace

void EngineFlags::add_to(CLI::App& app, bool with_trace) {
  app.add_option("--model,-m", cfg.model,
                 "GGUF file or Hugging Face folder (default: the embedded SmolLM2-135M-Instruct)");
  app.add_option("--backend", cfg.backend, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--page-size", cfg.page_size, "tokens per KV page (1..256)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--kv-layout", cfg.kv_layout, "NHD or HND")->capture_default_str();
  app.add_option("--kv-cache-dtype", cfg.kv_cache_dtype,
                 "KV cache element type: auto (the backend's: f32 on cpu, bf16 on cuda), bf16 "
                 "(cuda) or fp8 (e4m3, one byte a value, scales 1.0: twice bf16's tokens)")
      ->check(CLI::IsMember({"auto", "bf16", "fp8"}))
      ->capture_default_str();
  app.add_option("--quantization", cfg.quantization,
                 "linear weights: auto (as the checkpoint stores them), none (FP8 checkpoints "
                 "dequantised) or fp8 (e4m3 per output channel, per-token activation scales)")
      ->check(CLI::IsMember({"auto", "none", "fp8"}))
      ->capture_default_str();
  app.add_option("--tensor-parallel-size", cfg.tensor_parallel_size,
                 "split the model over this many ranks (heads, MLP features, vocabulary; cpu: "
                 "threads of this process; cuda: one process per GPU, over NCCL)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--nnodes", cfg.nnodes, "machines in the tensor-parallel group")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--node-rank", cfg.node_rank,
                 "this machine's index in the group (0 runs the engine and the server)")
      ->check(CLI::Range(0, 63))
      ->capture_default_str();
  app.add_option("--dist-init-addr", cfg.dist_init_addr,
                 "host:port of node 0, where every rank meets (default with one machine: a "
                 "free port of 127.0.0.1)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--tp-rank", tp_rank, "internal: serve this tensor-parallel rank")
      ->group("")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--kv-cache-memory", cfg.kv_cache_memory,
                 "KV cache size: bytes (2GiB, 512MB, 1000000) or a fraction of free memory (0.9). "
                 "Default: 0.9 of the free GPU memory on cuda, min(2GiB, 25% of RAM) on cpu; "
                 "never more pages than --max-num-seqs requests at --max-model-len use");
  app.add_option("--chat-template", cfg.chat_template,
                 "a Jinja chat template file used instead of the model's own");
  app.add_option("--host-kv-cache", cfg.host_kv_cache,
                 "host-memory tier of the prefix cache: bytes (8GiB) or a fraction of RAM (0.25); "
                 "evicted cached pages move there and prefix hits copy them back (default: off)");
  add_sparse_flags(app, cfg);
  app.add_option("--max-num-batched-tokens", cfg.max_num_batched_tokens, "token budget of one step")
      ->check(kPositiveInt)
      ->capture_default_str();
  app.add_option("--max-num-seqs", cfg.max_num_seqs, "running requests at most")
      ->check(kPositiveInt)
      ->capture_default_str();
  app.add_option("--max-model-len", cfg.max_model_len, "context length (0: the model's)")
      ->capture_default_str();
  app.add_option("--streaming-window", cfg.streaming_window,
                 "StreamingLLM: every request keeps its sink pages and its most recent N tokens "
                 "(whole pages), the pages between freed and kept keys moved to positions within "
                 "the cache, so a stream runs in bounded memory past --max-model-len (0: off)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  app.add_option("--streaming-sink-pages", cfg.streaming_sink_pages,
                 "StreamingLLM: the first pages every request keeps (attention sinks)")
      ->check(kNonNegativeInt)
      ->capture_default_str();
  app.add_option("--load-format", cfg.load_format,
                 "auto (weights from --model) or dummy (seeded random weights from the config "
                 "alone: --model is a config.json, e.g. configs/qwen3-0.6b.json; prompts are "
                 "token ids)")
      ->check(CLI::IsMember({"auto", "dummy"}))
      ->capture_default_str();
  app.add_option("--dummy-seed", cfg.dummy_seed, "seed of the dummy weights")
      ->capture_default_str();
  app.add_flag("!--no-prefix-cache", cfg.enable_prefix_cache,
               "compute every prompt in full instead of reusing cached prefix pages");
  app.add_flag("!--no-cascade", cfg.enable_cascade,
               "read shared prefixes per request instead of once per step (cascade levels)");
  app.add_flag("--cascade-force", cfg.cascade_force,
               "give every shared prefix its own level, whatever the cost model says");
  app.add_flag("!--no-cuda-graphs", cfg.enable_cuda_graphs,
               "run decode steps eagerly instead of replaying CUDA graphs");
  app.add_option("--graph-max-batch", cfg.graph_max_batch,
                 "largest decode batch run as a CUDA graph")
      ->check(kPositiveInt)
      ->capture_default_str();
  app.add_flag("!--no-device-sampling", cfg.device_sampling,
               "always copy logits to the host and sample there");
  app.add_flag("!--no-async-scheduling", cfg.async_scheduling,
               "wait for each step's tokens before scheduling the next");
  std::vector<std::string> modes;
  for (CpuActivations a : kAllCpuActivations) modes.push_back(cpu_activations_name(a));
  app.add_option("--cpu-activations", cpu_activations,
                 "CPU backend: activations against quantized weights: int8 (default; fastest at "
                 "batch 1), int16 or f32 (exact); overrides NC_CPU_ACTIVATIONS")
      ->check(CLI::IsMember(modes))
      ->each([](const std::string& v) { set_cpu_activations(cpu_activations_parse(v.c_str())); });
  app.add_option("--grammar-timeout", cfg.grammar_compile_timeout_s,
                 "structured output: seconds a grammar may take to compile")
      ->capture_default_str();
  if (!with_trace) return;
  app.add_option("--memory-trace", memory_trace,
                 "write the KV pages per step as Chrome trace JSON (chrome://tracing, Perfetto)");
}

std::shared_ptr<MemoryTraceWriter> EngineFlags::open_memory_trace() const {
  if (memory_trace.empty()) return nullptr;
  return std::make_shared<MemoryTraceWriter>(memory_trace);
}

void attach_memory_trace(Engine& engine, const std::shared_ptr<MemoryTraceWriter>& trace) {
  if (trace) engine.add_memory_hook(trace);
}

std::string cpu_activations_in_use() {
  return cpu_activations_name(cpu_activations_active());
}

std::string streaming_summary(const EngineStats& s) {
  const StreamingStats& w = s.streaming;
  if (w.window_tokens == 0) return "";
  return fmt::format(
      "streaming: window {} tokens + {} sink pages, at most {} pages a decoding request; peak {} "
      "pages a request; {} evictions dropped {} tokens ({} pages), {} pages re-rotated",
      w.window_tokens, w.sink_pages, w.page_bound, w.peak_request_pages, w.evictions,
      w.evicted_tokens, w.evicted_pages, w.shifted_pages);
}

std::string memory_summary(const EngineStats& s) {
  const double mib = 1048576.0;
  return fmt::format(
      "memory: weights {:.1f} MiB{}, workspace {:.1f} MiB, kv cache {:.1f} MiB ({} pages of {} "
      "tokens), kv {} at {} bytes per token{}",
      s.weight_bytes / mib, s.weight_dtype.empty() ? "" : " (linear " + s.weight_dtype + ")",
      s.workspace_bytes / mib, s.kv_cache_bytes / mib, s.total_pages, s.page_size,
      s.kv_cache_dtype.empty() ? "?" : s.kv_cache_dtype, s.kv_bytes_per_token,
      s.free_memory_bytes ? fmt::format(", free when sized {:.1f} MiB", s.free_memory_bytes / mib)
                          : std::string());
}

SamplingFlags::SamplingFlags() {
  params.temperature = 0.7f;
  params.max_tokens = 256;
}

void SamplingFlags::add_to(CLI::App& app) {
  app.add_option("--temperature,-t", params.temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-k", params.top_k, "-1 = off")->capture_default_str();
  app.add_option("--top-p", params.top_p)->capture_default_str();
  app.add_option("--min-p", params.min_p)->capture_default_str();
  app.add_option("--repetition-penalty", params.repetition_penalty)->capture_default_str();
  app.add_option("--presence-penalty", params.presence_penalty)->capture_default_str();
  app.add_option("--frequency-penalty", params.frequency_penalty)->capture_default_str();
  app.add_option("--seed", seed, "per-request seed (default: from the engine's seed 0)");
  app.add_option("--max-tokens,-n", params.max_tokens, "tokens to generate at most")
      ->capture_default_str();
  app.add_option("--min-tokens", params.min_tokens)->capture_default_str();
  // One value per occurrence, so that a positional prompt after `--stop .` stays a prompt.
  repeatable(app.add_option("--stop", params.stop, "stop string (repeat the flag for more)"));
  repeatable(app.add_option("--stop-token-id,--stop-token-ids", params.stop_token_ids,
                            "stop token id (repeat the flag for more)"));
  app.add_flag("--ignore-eos", params.ignore_eos, "keep going past end-of-sequence tokens");
  app.add_flag("!--no-skip-special", params.skip_special_tokens,
               "print special tokens in the output");
}

SamplingParams SamplingFlags::get() const {
  SamplingParams p = params;
  p.seed = seed;
  return p;
}

SamplingParams fit_to_context(const Engine& engine, SamplingParams p, size_t prompt_len) {
  if (engine.config().streaming_window > 0) return p;  // a stream has no end of context
  const int64_t left = int64_t(engine.stats().max_model_len) - int64_t(prompt_len);
  if (left >= 1) p.max_tokens = int(std::min<int64_t>(p.max_tokens, left));
  p.min_tokens = std::min(p.min_tokens, p.max_tokens);
  return p;
}

bool stderr_is_tty() {
  return isatty(fileno(stderr)) != 0;
}

namespace {

void draw_progress(size_t done, size_t total, int64_t tokens, double secs) {
  const int width = 30;
  const int filled = total ? int(width * done / total) : width;
  fmt::print(stderr, "\r[{}{}] {}/{} requests, {} tokens, {:.1f} tok/s ", std::string(filled, '#'),
             std::string(width - filled, '.'), done, total, tokens,
             secs > 0 ? double(tokens) / secs : 0.0);
  std::fflush(stderr);
}

}  // namespace

std::vector<CompletionOutput> run_batch(Engine& engine,
                                        const std::vector<std::vector<int32_t>>& prompts,
                                        const std::vector<SamplingParams>& params, bool progress) {
  using Clock = std::chrono::steady_clock;
  std::map<RequestId, size_t> index;
  std::vector<CompletionOutput> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    index[engine.add_request(prompts[i], params[i])] = i;
    out[i].prompt_token_ids = prompts[i];
  }
  progress = progress && stderr_is_tty();
  const auto t0 = Clock::now();
  auto last_draw = t0;
  size_t done = 0;
  int64_t tokens = 0;
  while (engine.has_unfinished()) {
    for (RequestOutput& o : engine.step()) {
      auto it = index.find(o.id);
      if (it == index.end()) continue;
      tokens += int64_t(o.new_token_ids.size());
      done += out[it->second].append(o);
    }
    const auto now = Clock::now();
    if (progress && (now - last_draw > std::chrono::milliseconds(200) || done == prompts.size())) {
      draw_progress(done, prompts.size(), tokens, std::chrono::duration<double>(now - t0).count());
      last_draw = now;
    }
  }
  if (progress) fmt::print(stderr, "\n");
  return out;
}

}  // namespace nc::cli
