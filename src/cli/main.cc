// nanocascade: generate | chat | bench | tokenize. See docs/cli.md.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/cli_common.h"
#include "cli/cmd_serve.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"nanocascade: LLM inference with continuous batching over a paged KV cache"};
  app.require_subcommand(1);
  nc::cli::add_generate_command(app);
  nc::cli::add_chat_command(app);
  nc::cli::add_bench_command(app);
  nc::cli::add_tokenize_command(app);
  nc::cli::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const nc::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
