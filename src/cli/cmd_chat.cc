// nanocascade chat: an interactive conversation in the terminal with the model's chat template,
// streaming the reply as it is generated. /exit quits, /reset forgets the conversation.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"

namespace nc::cli {
namespace {

struct ChatArgs {
  EngineFlags engine;
  SamplingFlags sampling;
  std::string system;
};

void run_chat(const ChatArgs& a) {
  Engine engine(a.engine.cfg);
  const bool tty = isatty(fileno(stdin)) != 0;
  std::vector<ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  if (tty) fmt::print(stderr, "nanocascade chat: /exit to quit, /reset to start over\n");
  for (;;) {
    if (tty) {
      fmt::print("> ");
      std::fflush(stdout);
    }
    std::string line;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(a.system.empty() ? 0 : 1);
      fmt::print(stderr, "(conversation reset)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    const std::vector<int32_t> ids = engine.encode_chat(history, true);
    SamplingParams p = fit_to_context(engine, a.sampling.get(), ids.size());
    std::string reply;
    try {
      engine.add_request(ids, p);
    } catch (const Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      history.pop_back();
      continue;
    }
    while (engine.has_unfinished()) {
      for (const RequestOutput& o : engine.step()) {
        fmt::print("{}", o.text_delta);
        std::fflush(stdout);
        reply += o.text_delta;
      }
    }
    fmt::print("\n");
    history.push_back({"assistant", reply});
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto args = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive multi-turn chat (/exit, /reset)");
  cmd->add_option("--system", args->system, "system prompt");
  args->engine.add_to(*cmd);
  args->sampling.add_to(*cmd);
  cmd->callback([args] { run_chat(*args); });
}

}  // namespace nc::cli
