// nanocascade: generate | chat | bench | tokenize | serve. See docs/cli.md.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "cli/cli_common.h"
#include "cli/cmd_serve.h"
#include "core/error.h"

#ifndef NC_VERSION
#define NC_VERSION "unknown"
#endif
#ifndef NC_GIT_COMMIT
#define NC_GIT_COMMIT ""
#endif

namespace {

// "nanocascade 0.1.0 (commit 5ea7ee0)": the CMake project version and the commit configured from.
std::string version_string() {
  const std::string commit = NC_GIT_COMMIT;
  return fmt::format("nanocascade {}{}", NC_VERSION,
                     commit.empty() ? std::string() : fmt::format(" (commit {})", commit));
}

}  // namespace

int main(int argc, char** argv) {
  nc::cli::set_command_line(argc, argv);
  CLI::App app{"nanocascade: LLM inference with continuous batching over a paged KV cache"};
  app.set_version_flag("--version,-V", version_string(), "print the version and exit");
  app.require_subcommand(1);
  nc::cli::add_generate_command(app);
  nc::cli::add_chat_command(app);
  nc::cli::add_bench_command(app);
  nc::cli::add_tokenize_command(app);
  nc::cli::add_memory_command(app);
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
  // Output that could not be written (a full disk, a closed pipe's reader gone) is a failure,
  // not a silent success.
  std::cout.flush();
  if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout)) {
    fmt::print(stderr, "error: writing the output failed: {}\n", std::strerror(errno));
    return 1;
  }
  return 0;
}
