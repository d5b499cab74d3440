// nanocascade bench: nano-vLLM's throughput workload. Python's random with seed 0 draws, per
// request, an input length in [100, max_input] and that many token ids in [0, 10000], then an
// output length in [100, max_output] per request; ignore_eos, temperature 0.6. Prints output
// tokens/s and the engine's own time per step (scheduling + plan building) apart from the model.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "cli/py_random.h"
#include "core/error.h"
#include "model/llama.h"

namespace nc::cli {
namespace {

struct BenchArgs {
  EngineFlags engine;
  int num_requests = 256;
  int max_input = 1024;
  int max_output = 1024;
  uint32_t seed = 0;
  std::string json;  // also write the numbers here
};

void run_bench(const BenchArgs& a) {
  NC_CHECK(a.num_requests >= 1, "bench: --num-requests must be >= 1");
  NC_CHECK(
      a.max_input >= 100 && a.max_output >= 100,
      "bench: --max-input and --max-output must be >= 100 (lengths are drawn from [100, max])");
  Engine engine(a.engine.cfg);
  PyRandom rng(a.seed);
  std::vector<std::vector<int32_t>> prompts(a.num_requests);
  for (auto& p : prompts) {
    p.resize(size_t(rng.randint(100, a.max_input)));
    for (int32_t& t : p) t = int32_t(rng.randint(0, 10000));
  }
  std::vector<SamplingParams> params(a.num_requests);
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].temperature = 0.6f;
    params[i].ignore_eos = true;
    params[i].max_tokens = int(rng.randint(100, a.max_output));
    prompt_tokens += int64_t(prompts[i].size());
  }
  // Warm-up (as nano-vLLM does), outside the measurement; with CUDA graphs, one decode step at
  // each bucket size so that every graph is captured before the clock starts (nano-vLLM captures
  // its graphs at start-up too).
  SamplingParams warm;
  warm.max_tokens = 4;
  engine.generate(std::vector<std::vector<int32_t>>{{1, 2, 3, 4}}, warm);
  if (a.engine.cfg.enable_cuda_graphs && a.engine.cfg.backend == "cuda") {
    warm.max_tokens = 2;  // one prefill step, then one decode step of the whole batch
    const int max_batch = std::min(a.engine.cfg.graph_max_batch, a.engine.cfg.max_num_seqs);
    for (int b : graph_buckets(max_batch)) {
      std::vector<std::vector<int32_t>> ps;
      for (int i = 0; i < b; ++i) ps.push_back({i + 1, 2, 3, 4});  // distinct: no shared prefix
      engine.generate(ps, warm);
    }
  }
  const EngineStats before = engine.stats();

  const auto t0 = std::chrono::steady_clock::now();
  const auto outs = run_batch(engine, prompts, params, true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const EngineStats after = engine.stats();
  int64_t out_tokens = 0;
  for (const auto& o : outs) out_tokens += int64_t(o.token_ids.size());
  const int64_t steps = after.num_steps - before.num_steps;
  const double sched = after.schedule_s - before.schedule_s;
  const double model = after.model_s - before.model_s;
  const double sample = after.sample_s - before.sample_s;
  fmt::print("requests {}, prompt tokens {}, output tokens {}, time {:.2f} s\n", a.num_requests,
             prompt_tokens, out_tokens, secs);
  fmt::print("throughput: {:.2f} output tok/s, {:.2f} total tok/s\n", out_tokens / secs,
             (prompt_tokens + out_tokens) / secs);
  fmt::print(
      "steps {}: per step {:.3f} ms scheduling + plan building, {:.3f} ms model, {:.3f} ms "
      "sampling + detokenization; preemptions {}\n",
      steps, steps ? 1e3 * sched / steps : 0.0, steps ? 1e3 * model / steps : 0.0,
      steps ? 1e3 * sample / steps : 0.0, after.num_preemptions - before.num_preemptions);
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
        "wall per step\n",
        name, k.steps, double(k.tokens) / k.steps, double(k.kv_tokens) / k.steps,
        1e3 * k.device_s / k.steps, 1e3 * k.wall_s / k.steps);
  }
  fmt::print("cuda graph steps {}, tokens sampled on the device {}\n",
             after.num_graph_steps - before.num_graph_steps,
             after.num_device_sampled - before.num_device_sampled);
  if (!a.json.empty()) {
    std::FILE* f = std::fopen(a.json.c_str(), "w");
    NC_CHECK(f != nullptr, "bench: cannot write {}", a.json);
    auto k_json = [](const EngineStats::StepKind& k) {
      return fmt::format(
          "{{\"steps\": {}, \"tokens\": {}, \"kv_tokens\": {}, \"attn_pairs\": {}, "
          "\"device_s\": {:.6f}, \"wall_s\": {:.6f}}}",
          k.steps, k.tokens, k.kv_tokens, k.attn_pairs, k.device_s, k.wall_s);
    };
    fmt::print(f,
               "{{\"requests\": {}, \"prompt_tokens\": {}, \"output_tokens\": {}, \"time_s\": "
               "{:.6f}, \"steps\": {}, \"schedule_s\": {:.6f}, \"model_s\": {:.6f}, "
               "\"sample_s\": {:.6f}, \"device_s\": {:.6f}, \"preemptions\": {}, "
               "\"graph_steps\": {}, \"device_sampled\": {}, \"weight_bytes\": {}, "
               "\"workspace_bytes\": {}, \"kv_cache_bytes\": {}, \"kv_pages\": {}, "
               "\"page_size\": {}, \"free_memory_bytes\": {}, \"decode\": {}, \"prefill\": "
               "{}, \"cuda_graphs\": {}}}\n",
               a.num_requests, prompt_tokens, out_tokens, secs, steps, sched, model, sample, dev,
               after.num_preemptions - before.num_preemptions,
               after.num_graph_steps - before.num_graph_steps,
               after.num_device_sampled - before.num_device_sampled, after.weight_bytes,
               after.workspace_bytes, after.kv_cache_bytes, after.total_pages, after.page_size,
               after.free_memory_bytes, k_json(dec), k_json(pre),
               a.engine.cfg.enable_cuda_graphs ? "true" : "false");
    std::fclose(f);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "throughput benchmark (nano-vLLM's workload)");
  cmd->add_option("--num-requests", args->num_requests)->capture_default_str();
  cmd->add_option("--max-input", args->max_input, "input lengths from [100, max-input]")
      ->capture_default_str();
  cmd->add_option("--max-output", args->max_output, "output lengths from [100, max-output]")
      ->capture_default_str();
  cmd->add_option("--workload-seed", args->seed, "Python random seed of the workload")
      ->capture_default_str();
  cmd->add_option("--json", args->json, "also write the results to this JSON file");
  args->engine.add_to(*cmd);
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace nc::cli
