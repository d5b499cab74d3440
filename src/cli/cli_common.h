// Shared pieces of the `nanocascade` subcommands: engine and sampling flags, the batch runner
// with its progress bar, and the summary line.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/memory_trace.h"
#include "nanocascade/engine.h"

namespace nc::cli {

// Integer checks whose message names the range one can type ("Value 0 not in range 1 to
// 2147483647"), where CLI11's PositiveNumber said "not in range 0.000000 to 1.79...e308".
inline const CLI::Range kPositiveInt{1, std::numeric_limits<int>::max()};
inline const CLI::Range kNonNegativeInt{0, std::numeric_limits<int>::max()};
inline const CLI::Range kPositiveSize{int64_t{1}, std::numeric_limits<int64_t>::max()};

// A vector option that takes exactly one value per occurrence (`--stop . --stop ,`), so that
// it never swallows the positional arguments after it.
CLI::Option* repeatable(CLI::Option* opt);

struct EngineFlags {
  EngineConfig cfg;
  // --cpu-activations int8|int16|f32: the CPU matmuls' activation mode (cpu_matmul.h), set for
  // the process when the flag is parsed; it wins over NC_CPU_ACTIVATIONS.
  std::string cpu_activations;
  std::string memory_trace;  // --memory-trace FILE: Chrome trace JSON of the KV pages per step
  int tp_rank = -1;          // --tp-rank (hidden): this process serves that rank (cli/tp_ranks.h)
  void add_to(CLI::App& app, bool with_trace = true);
  // The --memory-trace writer (null without the flag), its file open: call it before any work
  // so that a path that cannot be written fails first (nc::Error naming it).
  std::shared_ptr<MemoryTraceWriter> open_memory_trace() const;
};

// The process's command line as main() received it (cli/tp_ranks.h starts it again for the
// other ranks of a tensor-parallel group).
void set_command_line(int argc, char** argv);
const std::vector<std::string>& command_line();

// Registers the trace (when there is one) with the engine.
void attach_memory_trace(Engine& engine, const std::shared_ptr<MemoryTraceWriter>& trace);

struct SamplingFlags {
  SamplingParams params;
  std::optional<uint64_t> seed;
  SamplingFlags();
  void add_to(CLI::App& app);
  SamplingParams get() const;
};

// Runs token-id prompts to completion, each with max_tokens capped to what the context leaves,
// drawing a progress bar on stderr when it is a terminal.
std::vector<CompletionOutput> run_batch(Engine& engine,
                                        const std::vector<std::vector<int32_t>>& prompts,
                                        const std::vector<SamplingParams>& params, bool progress);

// max_tokens capped to the context left after the prompt (as it is with a streaming window).
SamplingParams fit_to_context(const Engine& engine, SamplingParams p, size_t prompt_len);

bool stderr_is_tty();

// The CPU activation mode in use ("int8", "int16" or "f32").
std::string cpu_activations_in_use();

// "memory: weights .. MiB, workspace .., kv cache .. (pages)".
std::string memory_summary(const EngineStats& s);
// "streaming: window .. tokens + .. sink pages, at most .. pages a decoding request; peak ..
// pages a request; evictions, tokens and pages dropped, pages re-rotated"; "" without a window.
std::string streaming_summary(const EngineStats& s);

void add_generate_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_memory_command(CLI::App& app);

}  // namespace nc::cli
