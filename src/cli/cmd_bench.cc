// nanocascade bench: nano-vLLM's throughput workload. Python's random with seed 0 draws, per
// request, an input length in [100, max_input] and that many token ids in [0, 10000], then an
// output length in [100, max_output] per request; ignore_eos, temperature 0.6. Prints output
// tokens/s and the engine's own time per step (scheduling + plan building) apart from the model.
// Two more workloads for the prefix cache and cascade attention (docs/benchmarks.md "Cascade end
// to end"): --workload shared-prefix (SGLang's generated-shared-prefix: groups of prompts that
// share one random system prompt, each with its own random question) and --workload multi-turn
// (conversations whose every turn re-sends the whole history). Both print the mean time to first
// token and the engine's cache stats besides the throughput.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>

#include "cli/cli_common.h"
#include "cli/py_random.h"
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
};

// Token ids in [0, 10000], as the nano-vLLM workload draws them.
std::vector<int32_t> random_ids(PyRandom& rng, int n) {
  std::vector<int32_t> ids(size_t(std::max(n, 0)));
  for (int32_t& t : ids) t = int32_t(rng.randint(0, 10000));
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

SamplingParams workload_params(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.6f;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
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
  for (auto& p : prompts) p = random_ids(rng, int(rng.randint(100, a.max_input)));
  std::vector<SamplingParams> params(a.num_requests);
  for (auto& p : params) p = workload_params(int(rng.randint(100, a.max_output)));
  return run_prompts(engine, prompts, params);
}

// SGLang's generated-shared-prefix: per group one system prompt, per prompt one question;
// all requests at once, in group order.
RunResult run_shared_prefix(Engine& engine, const BenchArgs& a) {
  PyRandom rng(a.seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int g = 0; g < a.groups; ++g) {
    const std::vector<int32_t> system = random_ids(rng, a.system_len);
    for (int i = 0; i < a.prompts_per_group; ++i) {
      std::vector<int32_t> p = system;
      const std::vector<int32_t> q = random_ids(rng, a.question_len);
      p.insert(p.end(), q.begin(), q.end());
      prompts.push_back(std::move(p));
    }
  }
  std::vector<SamplingParams> params(prompts.size(), workload_params(a.output_len));
  for (size_t i = 0; i < prompts.size(); ++i)
    params[i] = fit_to_context(engine, params[i], prompts[i].size());
  return run_prompts(engine, prompts, params);
}

// One system prompt; a.groups conversations run concurrently, each of a.prompts_per_group
// turns run one after the other. A turn's prompt is the previous turn's prompt, its answer and
// a new user message of a.question_len random ids.
RunResult run_multi_turn(Engine& engine, const BenchArgs& a) {
  PyRandom rng(a.seed);
  const std::vector<int32_t> system = random_ids(rng, a.system_len);
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
    const std::vector<int32_t> user = random_ids(rng, a.question_len);
    cv.prompt.insert(cv.prompt.end(), user.begin(), user.end());
    cv.answer.clear();
    const SamplingParams p =
        fit_to_context(engine, workload_params(a.output_len), cv.prompt.size());
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

void run_bench(const BenchArgs& a) {
  NC_CHECK(a.num_requests >= 1, "bench: --num-requests must be >= 1");
  NC_CHECK(a.workload == "nano-vllm" || a.workload == "shared-prefix" || a.workload == "multi-turn",
           "bench: unknown --workload '{}' (nano-vllm, shared-prefix or multi-turn)", a.workload);
  NC_CHECK(a.groups >= 1 && a.prompts_per_group >= 1 && a.system_len >= 0 && a.question_len >= 1 &&
               a.output_len >= 1,
           "bench: --groups, --prompts-per-group, --question-len and --output-len must be >= 1 "
           "and --system-len >= 0");
  Engine engine(a.engine.cfg);
  // Warm-up outside the measurement (as nano-vLLM does); every CUDA graph is captured in it.
  engine.warmup();
  const EngineStats before = engine.stats();

  const RunResult run = a.workload == "shared-prefix" ? run_shared_prefix(engine, a)
                        : a.workload == "multi-turn"  ? run_multi_turn(engine, a)
                                                      : run_nano_vllm(engine, a);
  const double secs = run.secs;
  const int64_t prompt_tokens = run.prompt_tokens;
  const int64_t out_tokens = run.out_tokens;
  const EngineStats after = engine.stats();
  const int64_t steps = after.num_steps - before.num_steps;
  const double sched = after.schedule_s - before.schedule_s;
  const double model = after.model_s - before.model_s;
  const double sample = after.sample_s - before.sample_s;
  const double ttft = run.num_requests ? run.ttft_sum_s / run.num_requests : 0.0;
  fmt::print("workload {}: requests {}, prompt tokens {}, output tokens {}, time {:.2f} s\n",
             a.workload, run.num_requests, prompt_tokens, out_tokens, secs);
  fmt::print("throughput: {:.2f} output tok/s, {:.2f} total tok/s\n", out_tokens / secs,
             (prompt_tokens + out_tokens) / secs);
  fmt::print(
      "steps {}: per step {:.3f} ms scheduling + plan building, {:.3f} ms model, {:.3f} ms "
      "sampling + detokenization; preemptions {}\n",
      steps, steps ? 1e3 * sched / steps : 0.0, steps ? 1e3 * model / steps : 0.0,
      steps ? 1e3 * sample / steps : 0.0, after.num_preemptions - before.num_preemptions);
  fmt::print("mean time to first token: {:.2f} ms\n", 1e3 * ttft);
  const CacheStats& cb = before.cache;
  const CacheStats& ca = after.cache;
  const int64_t lookup = ca.lookup_tokens - cb.lookup_tokens;
  const int64_t hit = ca.hit_tokens - cb.hit_tokens;
  const double hit_rate = lookup ? double(hit) / double(lookup) : 0.0;
  const double kv_plain = ca.kv_bytes_plain - cb.kv_bytes_plain;
  const double kv_cascade = ca.kv_bytes_cascade - cb.kv_bytes_cascade;
  const int64_t cascade_steps = ca.cascade_steps - cb.cascade_steps;
  fmt::print(
      "cache: prefix hit rate {:.1f}% ({} of {} prompt tokens), max levels {}, cascade steps {}, "
      "evicted pages {}; attention KV read {:.2f} GiB with cascade vs {:.2f} GiB without "
      "({:.2f}x)\n",
      100.0 * hit_rate, hit, lookup, ca.max_levels, cascade_steps,
      ca.evicted_pages - cb.evicted_pages, kv_cascade / double(1 << 30), kv_plain / double(1 << 30),
      kv_cascade > 0 ? kv_plain / kv_cascade : 0.0);
  fmt::print("{}\n", memory_summary(after));
  const double dev = after.device_s - before.device_s;
  const auto kind = [](const EngineStats::StepKind& x, const EngineStats::StepKind& y) {
    EngineStats::StepKind d;
    d.steps = x.steps - y.steps;
    d.tokens = x.tokens - y.tokens;
    d.kv_tokens = x.kv_tokens - y.kv_tokens;
    d.attn_pairs = x.attn_pairs - y.attn_pairs;
    d.device_s = x.device_s - y.device_s;
    d.wall_s = x.wall_s - y.wall_s;
    d.model_prep_s = x.model_prep_s - y.model_prep_s;
    return d;
  };
  const EngineStats::StepKind dec = kind(after.decode_steps, before.decode_steps);
  const EngineStats::StepKind pre = kind(after.prefill_steps, before.prefill_steps);
  if (dev > 0) {
    fmt::print(
        "device: {:.2f} s busy in forward passes, {:.2f} s idle ({:.1f}% of the wall time; "
        "{:.3f} ms per step)\n",
        dev, secs - dev, 100.0 * (secs - dev) / secs, steps ? 1e3 * (secs - dev) / steps : 0.0);
  }
  for (const auto& [name, k] : {std::pair{"decode-only", dec}, std::pair{"with prefill", pre}}) {
    if (k.steps == 0) continue;
    fmt::print(
        "{} steps: {}, {:.1f} tokens and {:.0f} kv tokens per step, {:.3f} ms device, {:.3f} ms "
        "wall per step ({:.3f} ms of it in the model's host preparation)\n",
        name, k.steps, double(k.tokens) / k.steps, double(k.kv_tokens) / k.steps,
        1e3 * k.device_s / k.steps, 1e3 * k.wall_s / k.steps, 1e3 * k.model_prep_s / k.steps);
  }
  fmt::print(
      "cuda graph steps {}, tokens sampled on the device {}, steps queued behind a running one "
      "{} (async scheduling {})\n",
      after.num_graph_steps - before.num_graph_steps,
      after.num_device_sampled - before.num_device_sampled,
      after.num_overlapped_steps - before.num_overlapped_steps,
      a.engine.cfg.async_scheduling ? "on" : "off");
  if (!a.json.empty()) {
    std::FILE* f = std::fopen(a.json.c_str(), "w");
    NC_CHECK(f != nullptr, "bench: cannot write {}", a.json);
    auto k_json = [](const EngineStats::StepKind& k) {
      return fmt::format(
          "{{\"steps\": {}, \"tokens\": {}, \"kv_tokens\": {}, \"attn_pairs\": {}, "
          "\"device_s\": {:.6f}, \"wall_s\": {:.6f}, \"model_prep_s\": {:.6f}}}",
          k.steps, k.tokens, k.kv_tokens, k.attn_pairs, k.device_s, k.wall_s, k.model_prep_s);
    };
    fmt::print(f,
               "{{\"workload\": \"{}\", \"mean_ttft_s\": {:.6f}, \"cache\": {{\"lookup_tokens\": "
               "{}, \"hit_tokens\": {}, \"hit_rate\": {:.6f}, \"max_levels\": {}, "
               "\"cascade_steps\": {}, \"kv_bytes_plain\": {:.0f}, \"kv_bytes_cascade\": "
               "{:.0f}}}, \"prefix_cache\": {}, \"cascade\": {}, \"requests\": {}, "
               "\"prompt_tokens\": {}, \"output_tokens\": {}, \"time_s\": "
               "{:.6f}, \"steps\": {}, \"schedule_s\": {:.6f}, \"model_s\": {:.6f}, "
               "\"sample_s\": {:.6f}, \"device_s\": {:.6f}, \"preemptions\": {}, "
               "\"graph_steps\": {}, \"device_sampled\": {}, \"weight_bytes\": {}, "
               "\"workspace_bytes\": {}, \"kv_cache_bytes\": {}, \"kv_pages\": {}, "
               "\"page_size\": {}, \"free_memory_bytes\": {}, \"decode\": {}, \"prefill\": "
               "{}, \"cuda_graphs\": {}, \"async_scheduling\": {}, \"overlapped_steps\": {}}}\n",
               a.workload, ttft, lookup, hit, hit_rate, ca.max_levels, cascade_steps, kv_plain,
               kv_cascade, a.engine.cfg.enable_prefix_cache ? "true" : "false",
               a.engine.cfg.enable_cascade ? "true" : "false", run.num_requests, prompt_tokens,
               out_tokens, secs, steps, sched, model, sample, dev,
               after.num_preemptions - before.num_preemptions,
               after.num_graph_steps - before.num_graph_steps,
               after.num_device_sampled - before.num_device_sampled, after.weight_bytes,
               after.workspace_bytes, after.kv_cache_bytes, after.total_pages, after.page_size,
               after.free_memory_bytes, k_json(dec), k_json(pre),
               a.engine.cfg.enable_cuda_graphs ? "true" : "false",
               a.engine.cfg.async_scheduling ? "true" : "false",
               after.num_overlapped_steps - before.num_overlapped_steps);
    std::fclose(f);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "throughput benchmark (nano-vLLM's workload, shared-prefix, multi-turn)");
  cmd->add_option("--workload", args->workload,
                  "nano-vllm (random lengths), shared-prefix (SGLang's generated-shared-prefix) "
                  "or multi-turn")
      ->capture_default_str();
  cmd->add_option("--num-requests", args->num_requests, "nano-vllm workload: requests")
      ->capture_default_str();
  cmd->add_option("--max-input", args->max_input, "input lengths from [100, max-input]")
      ->capture_default_str();
  cmd->add_option("--max-output", args->max_output, "output lengths from [100, max-output]")
      ->capture_default_str();
  cmd->add_option("--groups", args->groups,
                  "shared-prefix: groups (one system prompt each); multi-turn: conversations")
      ->capture_default_str();
  cmd->add_option("--prompts-per-group", args->prompts_per_group,
                  "shared-prefix: prompts per group; multi-turn: turns per conversation")
      ->capture_default_str();
  cmd->add_option("--system-len", args->system_len, "system prompt length (token ids)")
      ->capture_default_str();
  cmd->add_option("--question-len", args->question_len,
                  "question (shared-prefix) or user message (multi-turn) length")
      ->capture_default_str();
  cmd->add_option("--output-len", args->output_len,
                  "output tokens per request (shared-prefix, "
                  "multi-turn)")
      ->capture_default_str();
  cmd->add_option("--workload-seed", args->seed, "Python random seed of the workload")
      ->capture_default_str();
  cmd->add_option("--json", args->json, "also write the results to this JSON file");
  args->engine.add_to(*cmd);
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace nc::cli
