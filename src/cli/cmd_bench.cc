// nanocascade bench: nano-vLLM's throughput workload. Python's random with seed 0 draws, per
// request, an input length in [100, max_input] and that many token ids in [0, 10000], then an
// output length in [100, max_output] per request; ignore_eos, temperature 0.6. Prints output
// tokens/s and the engine's own time per step (scheduling + plan building) apart from the model.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
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
  // Warm-up (as nano-vLLM does), outside the measurement.
  SamplingParams warm;
  warm.max_tokens = 4;
  engine.generate(std::vector<std::vector<int32_t>>{{1, 2, 3, 4}}, warm);
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
  fmt::print("kv cache: {} pages of {} tokens ({:.1f} MiB)\n", after.total_pages, after.page_size,
             after.kv_cache_bytes / 1048576.0);
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
  args->engine.add_to(*cmd);
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace nc::cli
