// nanocascade generate: complete prompts given as arguments or in a file (one per line).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/cli_common.h"
#include "cli/cpu_floor.h"
#include "cli/tp_ranks.h"
#include "core/error.h"

namespace nc::cli {
namespace {

struct GenerateArgs {
  EngineFlags engine;
  SamplingFlags sampling;
  std::vector<std::string> prompts;
  std::string file;
  bool chat = false;
  bool parse_special = false;
  bool quiet = false;
};

std::vector<std::string> read_prompts(const GenerateArgs& a) {
  std::vector<std::string> prompts = a.prompts;
  if (!a.file.empty()) {
    std::ifstream f(a.file);
    NC_CHECK(f.good(), "cannot open prompt file '{}'", a.file);
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) prompts.push_back(line);
    }
  }
  NC_CHECK(!prompts.empty(), "no prompts: give them as arguments or with --file");
  return prompts;
}

// The prompt is ordinary text unless --parse-special; with --chat it is a user message's content.
std::vector<int32_t> prompt_ids(const Engine& e, const std::string& text, const GenerateArgs& a) {
  if (a.chat) return e.encode_chat({{"user", text}}, true);
  return e.encode(text, true, a.parse_special);
}

// copy_bw: the machine's copy bandwidth (bytes/s) on the CPU backend, else 0.
void print_summary(const Engine& e, size_t requests, int64_t prompt_tokens, int64_t out_tokens,
                   double secs, double copy_bw) {
  const EngineStats s = e.stats();
  fmt::print(stderr,
             "{} requests, {} prompt tokens, {} output tokens in {:.2f} s: {:.1f} output tok/s "
             "({} steps, {} preemptions)\n",
             requests, prompt_tokens, out_tokens, secs, secs > 0 ? out_tokens / secs : 0.0,
             s.num_steps, s.num_preemptions);
  fmt::print(stderr, "{}\n", memory_summary(s));
  if (const std::string w = streaming_summary(s); !w.empty()) fmt::print(stderr, "{}\n", w);
  if (copy_bw > 0)
    fmt::print(stderr, "cpu: activations {}, {}\n", cpu_activations_in_use(),
               cpu_floor_line(s, copy_bw));
}

void run_generate(const GenerateArgs& a) {
  TensorParallelRanks ranks(a.engine);
  if (ranks.served()) return;  // this process was another rank of the group
  const std::vector<std::string> texts = read_prompts(a);
  const auto trace = a.engine.open_memory_trace();
  // Measured before the engine exists, while nothing else runs (cpu_floor.h).
  const double copy_bw = !a.quiet && a.engine.cfg.backend == "cpu" ? measure_copy_bandwidth() : 0.0;
  Engine engine(ranks.config());
  attach_memory_trace(engine, trace);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> ids;
  std::vector<SamplingParams> params;
  int64_t prompt_tokens = 0;
  for (const std::string& t : texts) {
    ids.push_back(prompt_ids(engine, t, a));
    params.push_back(fit_to_context(engine, a.sampling.get(), ids.back().size()));
    prompt_tokens += int64_t(ids.back().size());
  }
  int64_t out_tokens = 0;
  if (texts.size() == 1) {  // stream
    engine.add_request(ids[0], params[0]);
    while (engine.has_unfinished()) {
      for (const RequestOutput& o : engine.step()) {
        fmt::print("{}", o.text_delta);
        std::fflush(stdout);
        out_tokens += int64_t(o.new_token_ids.size());
        if (o.finished) {
          fmt::print("\n");
          std::fflush(stdout);
        }
      }
    }
  } else {
    const auto outs = run_batch(engine, ids, params, true);
    for (size_t i = 0; i < outs.size(); ++i) {
      fmt::print("=== [{}] {}\n{}\n", i, texts[i], outs[i].text);
      out_tokens += int64_t(outs[i].token_ids.size());
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fflush(stdout);
  if (!a.quiet) print_summary(engine, texts.size(), prompt_tokens, out_tokens, secs, copy_bw);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "complete prompts (streams when there is one)");
  cmd->add_option("prompts", args->prompts, "prompt texts");
  cmd->add_option("--file,-f", args->file, "file with one prompt per line");
  cmd->add_flag("--chat", args->chat, "wrap each prompt as a user message in the chat template");
  cmd->add_flag("--parse-special", args->parse_special,
                "read special-token texts in prompts (<|im_start|>, ...) as control tokens");
  cmd->add_flag("--quiet,-q", args->quiet, "no summary line on stderr");
  args->engine.add_to(*cmd);
  args->sampling.add_to(*cmd);
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace nc::cli
