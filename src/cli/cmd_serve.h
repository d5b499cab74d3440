// nanocascade serve: the OpenAI-compatible HTTP server (docs/server.md).
#pragma once
#include <CLI/CLI.hpp>

namespace nc::cli {

void add_serve_command(CLI::App& app);

}  // namespace nc::cli
