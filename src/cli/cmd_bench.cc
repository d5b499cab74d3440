// nanocascade bench: nano-vLLM's throughput workload. Python's random with seed 0 draws, per
// request, an input length in [100, max_input] and that many token ids in [0, 10000], then an
// output length in [100, max_output] per request; ignore_eos, temperature 0.6. Prints output
// tokens/s and the engine's own time per step (scheduling + plan building) apart from the model.
// Two more workloads for the prefix cache and cascade attention (docs/benchmarks.md "Cascade end
// to end"): --workload shared-prefix (SGLang's generated-shared-prefix: groups of prompts that
// share one random system prompt, each with its own random question) and --workload multi-turn
// (conversations whose every turn re-sends the whole history). Both print the mean time to first
// token and the engine's cache stats besides the throughput.
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

#include "cli/cli_common.h"
#include "cli/cpu_floor.h"
#include "cli/page_peaks.h"
#include "cli/py_random.h"
#include "cli/tp_ranks.h"
#include "core/error.h"

namespace nc::cli {
namespace {

struct BenchArgs {
  EngineFlags engine;
  int num_requests = 256;
  int max_input = 1024;
  int max_output = 1024;
  uint32_t seed = 0;
  std::string json;  // also write the numbers here
  std::string workload = "nano-vllm";
  // shared-prefix and multi-turn (multi-turn: groups = conversations, prompts-per-group = turns)
  int groups = 64;
  int prompts_per_group = 16;
  int system_len = 2048;
  int question_len = 128;
  int output_len = 256;
  // Structured output: every request's output must be JSON valid for this schema (a file).
  std::string json_schema;
  StructuredOutput structured;  // from json_schema
};

// Token ids in [0, 10000], as the nano-vLLM workload draws them; on a vocabulary of fewer ids
// (tiny test models) taken modulo its size, so the draws, and with them the lengths drawn
// after, stay those of the Python benchmark.
std::vector<int32_t> random_ids(PyRandom& rng, int n, int vocab_size) {
  std::vector<int32_t> ids(size_t(std::max(n, 0)));
  for (int32_t& t : ids) t = int32_t(rng.randint(0, 10000) % vocab_size);
  return ids;
}

// What one measured run produced, whatever the workload.
struct RunResult {
  int num_requests = 0;
  int64_t prompt_tokens = 0;
  int64_t out_tokens = 0;
  double ttft_sum_s = 0;
  double secs = 0;
};

// With a JSON schema (--json-schema) a request also ends when its JSON is complete.
SamplingParams workload_params(int max_tokens, const StructuredOutput& structured) {
  SamplingParams p;
  p.temperature = 0.6f;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  p.structured = structured;
  return p;
}

RunResult run_prompts(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<SamplingParams>& params) {
  RunResult r;
  r.num_requests = int(prompts.size());
  for (const auto& p : prompts) r.prompt_tokens += int64_t(p.size());
  const auto t0 = std::chrono::steady_clock::now();
  const auto outs = run_batch(engine, prompts, params, true);
  r.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& o : outs) {
    r.out_tokens += int64_t(o.token_ids.size());
    r.ttft_sum_s += o.time_to_first_token_s;
  }
  return r;
}

RunResult run_nano_vllm(Engine& engine, const BenchArgs& a) {
  NC_CHECK(
      a.max_input >= 100 && a.max_output >= 100,
      "bench: --max-input and --max-output must be >= 100 (lengths are drawn from [100, max])");
  PyRandom rng(a.seed);
  std::vector<std::vector<int32_t>> prompts(a.num_requests);
  for (auto& p : prompts)
    p = random_ids(rng, int(rng.randint(100, a.max_input)), engine.vocab_size());
  std::vector<SamplingParams> params(a.num_requests);
  for (auto& p : params) p = workload_params(int(rng.randint(100, a.max_output)), a.structured);
  return run_prompts(engine, prompts, params);
}

// SGLang's generated-shared-prefix: per group one system prompt, per prompt one question;
// all requests at once, in group order.
RunResult run_shared_prefix(Engine& engine, const BenchArgs& a) {
  PyRandom rng(a.seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int g = 0; g < a.groups; ++g) {
    const std::vector<int32_t> system = random_ids(rng, a.system_len, engine.vocab_size());
    for (int i = 0; i < a.prompts_per_group; ++i) {
      std::vector<int32_t> p = system;
      const std::vector<int32_t> q = random_ids(rng, a.question_len, engine.vocab_size());
      p.insert(p.end(), q.begin(), q.end());
      prompts.push_back(std::move(p));
    }
  }
  std::vector<SamplingParams> params(prompts.size(), workload_params(a.output_len, a.structured));
  for (size_t i = 0; i < prompts.size(); ++i)
    params[i] = fit_to_context(engine, params[i], prompts[i].size());
  return run_prompts(engine, prompts, params);
}

// One system prompt; a.groups conversations run concurrently, each of a.prompts_per_group
// turns run one after the other. A turn's prompt is the previous turn's prompt, its answer and
// a new user message of a.question_len random ids.
RunResult run_multi_turn(Engine& engine, const BenchArgs& a) {
  PyRandom rng(a.seed);
  const std::vector<int32_t> system = random_ids(rng, a.system_len, engine.vocab_size());
  struct Conv {
    std::vector<int32_t> prompt;  // the current turn's prompt
    std::vector<int32_t> answer;  // what the current turn generated so far
    int turn = 0;
  };
  std::vector<Conv> convs(size_t(a.groups));
  std::map<RequestId, size_t> active;
  RunResult r;
  auto submit = [&](size_t c) {
    Conv& cv = convs[c];
    const std::vector<int32_t> user = random_ids(rng, a.question_len, engine.vocab_size());
    cv.prompt.insert(cv.prompt.end(), user.begin(), user.end());
    cv.answer.clear();
    const SamplingParams p =
        fit_to_context(engine, workload_params(a.output_len, a.structured), cv.prompt.size());
    active[engine.add_request(cv.prompt, p)] = c;
    r.prompt_tokens += int64_t(cv.prompt.size());
    ++r.num_requests;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t c = 0; c < convs.size(); ++c) {
    convs[c].prompt = system;
    submit(c);
  }
  while (engine.has_unfinished()) {
    for (RequestOutput& o : engine.step()) {
      auto it = active.find(o.id);
      if (it == active.end()) continue;
      Conv& cv = convs[it->second];
      cv.answer.insert(cv.answer.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      r.out_tokens += int64_t(o.new_token_ids.size());
      if (!o.finished) continue;
      r.ttft_sum_s += o.time_to_first_token_s;
      const size_t c = it->second;
      active.erase(it);
      if (++cv.turn < a.prompts_per_group) {
        cv.prompt.insert(cv.prompt.end(), cv.answer.begin(), cv.answer.end());
        submit(c);
      }
    }
  }
  r.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

double mean_ttft_s(const RunResult& run) {
  return run.num_requests ? run.ttft_sum_s / run.num_requests : 0.0;
}

// Per step, in milliseconds (0 without steps).
double ms_per(double secs, int64_t steps) {
  return steps ? 1e3 * secs / double(steps) : 0.0;
}

// The workload, throughput, host time per step and time to first token.
void print_run(const BenchArgs& a, const RunResult& run, const EngineStats& d) {
  fmt::print("workload {}: requests {}, prompt tokens {}, output tokens {}, time {:.2f} s\n",
             a.workload, run.num_requests, run.prompt_tokens, run.out_tokens, run.secs);
  fmt::print("throughput: {:.2f} output tok/s, {:.2f} total tok/s\n", run.out_tokens / run.secs,
             (run.prompt_tokens + run.out_tokens) / run.secs);
  fmt::print(
      "steps {}: per step {:.3f} ms scheduling + plan building, {:.3f} ms model, {:.3f} ms "
      "sampling + detokenization; preemptions {}\n",
      d.num_steps, ms_per(d.schedule_s, d.num_steps), ms_per(d.model_s, d.num_steps),
      ms_per(d.sample_s, d.num_steps), d.num_preemptions);
  fmt::print("mean time to first token: {:.2f} ms\n", 1e3 * mean_ttft_s(run));
}

void print_cache_stats(const CacheStats& c) {
  const double gib = double(1 << 30);
  fmt::print(
      "cache: prefix hit rate {:.1f}% ({} of {} prompt tokens), max levels {}, cascade steps {}, "
      "evicted pages {}; attention KV read {:.2f} GiB with cascade vs {:.2f} GiB without "
      "({:.2f}x)\n",
      100.0 * c.hit_rate, c.hit_tokens, c.lookup_tokens, c.max_levels, c.cascade_steps,
      c.evicted_pages, c.kv_bytes_cascade / gib, c.kv_bytes_plain / gib,
      c.kv_bytes_cascade > 0 ? c.kv_bytes_plain / c.kv_bytes_cascade : 0.0);
}

// Graph steps, device-sampled tokens and overlapped steps: device counts, printed only for the
// CUDA backend (the CPU backend has no graphs, and its "device" draw is the host's).
void print_device_counts(const BenchArgs& a, const EngineStats& d) {
  if (a.engine.cfg.backend != "cuda") return;
  fmt::print(
      "cuda graph steps {}, tokens sampled on the device {}, steps queued behind a running one "
      "{} (async scheduling {})\n",
      d.num_graph_steps, d.num_device_sampled, d.num_overlapped_steps,
      a.engine.cfg.async_scheduling ? "on" : "off");
  if (d.num_kernel_compiles + d.num_kernel_cache_hits > 0)
    fmt::print("attention kernels built at run time: {} compiled ({:.1f} s), {} from the cache\n",
               d.num_kernel_compiles, d.kernel_compile_s, d.num_kernel_cache_hits);
}

// Cache, memory, device time and steps by kind over the run (`d`: stats_delta of the run); device
// times only where the backend measured them (d.device_s > 0).
void print_engine_stats(const BenchArgs& a, const RunResult& run, const EngineStats& d,
                        double copy_bw) {
  print_cache_stats(d.cache);
  fmt::print("{}\n", memory_summary(d));
  if (const std::string w = streaming_summary(d); !w.empty()) fmt::print("{}\n", w);
  const double idle = run.secs - d.device_s;
  if (d.device_s > 0) {
    fmt::print(
        "device: {:.2f} s busy in forward passes, {:.2f} s idle ({:.1f}% of the wall time; "
        "{:.3f} ms per step)\n",
        d.device_s, idle, 100.0 * idle / run.secs, ms_per(idle, d.num_steps));
  }
  for (const auto& [name, k] :
       {std::pair{"decode-only", d.decode_steps}, std::pair{"with prefill", d.prefill_steps}}) {
    if (k.steps == 0) continue;
    fmt::print(
        "{} steps: {}, {:.1f} tokens and {:.0f} kv tokens per step, {}{:.3f} ms wall per step "
        "({:.3f} ms of it in the model's host preparation, waits on a busy device included)\n",
        name, k.steps, double(k.tokens) / k.steps, double(k.kv_tokens) / k.steps,
        d.device_s > 0 ? fmt::format("{:.3f} ms device, ", ms_per(k.device_s, k.steps)) : "",
        ms_per(k.wall_s, k.steps), ms_per(k.model_prep_s, k.steps));
  }
  print_device_counts(a, d);
  if (copy_bw > 0)
    fmt::print("cpu: activations {}, {}\n", cpu_activations_in_use(), cpu_floor_line(d, copy_bw));
}

// The run's numbers and the engine's stats over it (to_json: the same keys as ever), one line.
void write_json(const BenchArgs& a, const RunResult& run, const EngineStats& d) {
  const EngineConfig& cfg = a.engine.cfg;
  nlohmann::ordered_json j = {{"workload", a.workload},
                              {"mean_ttft_s", mean_ttft_s(run)},
                              {"requests", run.num_requests},
                              {"prompt_tokens", run.prompt_tokens},
                              {"output_tokens", run.out_tokens},
                              {"time_s", run.secs},
                              {"prefix_cache", cfg.enable_prefix_cache},
                              {"cascade", cfg.enable_cascade},
                              {"cuda_graphs", cfg.enable_cuda_graphs},
                              {"async_scheduling", cfg.async_scheduling}};
  if (cfg.backend == "cpu") j["cpu_activations"] = cpu_activations_in_use();
  j.update(nlohmann::ordered_json(d));
  std::ofstream f(a.json);
  f << j.dump() << "\n";
  NC_CHECK(f.good(), "bench: cannot write {}", a.json);
}

void run_bench(BenchArgs a) {
  TensorParallelRanks ranks(a.engine);
  if (ranks.served()) return;  // this process was another rank of the group
  NC_CHECK(a.num_requests >= 1, "bench: --num-requests must be >= 1");
  // Where the results go is checked before the run (without creating the file), not found
  // unwritable after it.
  if (!a.json.empty()) {
    const std::filesystem::path out(a.json);
    const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : ".";
    const bool writable = std::filesystem::exists(out) ? ::access(out.c_str(), W_OK) == 0
                                                       : ::access(dir.c_str(), W_OK) == 0;
    NC_CHECK(writable, "bench: cannot write --json {}", a.json);
  }
  if (!a.json_schema.empty()) {
    std::ifstream f(a.json_schema);
    NC_CHECK(f.good(), "bench: cannot read --json-schema {}", a.json_schema);
    a.structured = {StructuredOutput::Kind::JsonSchema,
                    std::string(std::istreambuf_iterator<char>(f), {})};
  }
  NC_CHECK(a.workload == "nano-vllm" || a.workload == "shared-prefix" || a.workload == "multi-turn",
           "bench: unknown --workload '{}' (nano-vllm, shared-prefix or multi-turn)", a.workload);
  NC_CHECK(a.groups >= 1 && a.prompts_per_group >= 1 && a.system_len >= 0 && a.question_len >= 1 &&
               a.output_len >= 1,
           "bench: --groups, --prompts-per-group, --question-len and --output-len must be >= 1 "
           "and --system-len >= 0");
  const auto trace = a.engine.open_memory_trace();
  // The CPU's copy bandwidth, measured before the engine's threads exist (cpu_floor.h).
  const double copy_bw = a.engine.cfg.backend == "cpu" ? measure_copy_bandwidth() : 0.0;
  Engine engine(ranks.config());
  // Warm-up outside the measurement (as nano-vLLM does); every CUDA graph is captured in it.
  engine.warmup();
  if (a.structured.active()) engine.compile_grammar(a.structured);  // compiled before, cached
  attach_memory_trace(engine, trace);                               // the measured run only
  auto peaks = std::make_shared<PagePeaks>();
  engine.add_memory_hook(peaks);
  const EngineStats before = engine.stats();

  const RunResult run = a.workload == "shared-prefix" ? run_shared_prefix(engine, a)
                        : a.workload == "multi-turn"  ? run_multi_turn(engine, a)
                                                      : run_nano_vllm(engine, a);
  const EngineStats delta = stats_delta(before, engine.stats());
  print_run(a, run, delta);
  print_engine_stats(a, run, delta, copy_bw);
  if (const std::string pages = peaks->line(); !pages.empty()) fmt::print("{}\n", pages);
  if (const std::string host = peaks->host_line(); !host.empty()) fmt::print("{}\n", host);
  if (!a.json.empty()) write_json(a, run, delta);
}

// The integer flags, in --help's order.
struct IntFlag {
  const char* name;
  int BenchArgs::*member;
  const char* help;
};
constexpr IntFlag kIntFlags[] = {
    {"--num-requests", &BenchArgs::num_requests, "nano-vllm workload: requests"},
    {"--max-input", &BenchArgs::max_input, "input lengths from [100, max-input]"},
    {"--max-output", &BenchArgs::max_output, "output lengths from [100, max-output]"},
    {"--groups", &BenchArgs::groups,
     "shared-prefix: groups (one system prompt each); multi-turn: conversations"},
    {"--prompts-per-group", &BenchArgs::prompts_per_group,
     "shared-prefix: prompts per group; multi-turn: turns per conversation"},
    {"--system-len", &BenchArgs::system_len, "system prompt length (token ids)"},
    {"--question-len", &BenchArgs::question_len,
     "question (shared-prefix) or user message (multi-turn) length"},
    {"--output-len", &BenchArgs::output_len,
     "output tokens per request (shared-prefix, multi-turn)"},
};

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "throughput benchmark (nano-vLLM's workload, shared-prefix, multi-turn)");
  cmd->add_option("--workload", args->workload,
                  "nano-vllm (random lengths), shared-prefix (SGLang's generated-shared-prefix) "
                  "or multi-turn")
      ->capture_default_str();
  for (const IntFlag& f : kIntFlags) {
    cmd->add_option(f.name, (*args).*f.member, f.help)->capture_default_str();
  }
  cmd->add_option("--workload-seed", args->seed, "Python random seed of the workload")
      ->capture_default_str();
  cmd->add_option("--json", args->json, "also write the results to this JSON file");
  cmd->add_option("--json-schema", args->json_schema,
                  "structured output: every request's output is JSON valid for this schema "
                  "file (it also ends when its JSON is complete)");
  args->engine.add_to(*cmd);
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace nc::cli
