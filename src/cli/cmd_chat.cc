// nanocascade chat: an interactive conversation in the terminal with the model's chat template,
// streaming the reply as it is generated. /exit quits, /reset forgets the conversation, /history
// tells what the conversation holds (the messages' roles and lengths). Ctrl-C
// during a reply stops it (the part shown stays in the conversation); Ctrl-C at the prompt or
// Ctrl-D quits. Lines are edited with libedit where the build has it (chat_input.h).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/chat_input.h"
#include "cli/cli_common.h"
#include "cli/tp_ranks.h"
#include "core/error.h"

namespace nc::cli {
namespace {

struct ChatArgs {
  EngineFlags engine;
  SamplingFlags sampling;
  std::string system;
};

// Streams one reply to stdout. Ctrl-C aborts the request; the text shown so far is returned.
std::string stream_reply(Engine& engine, RequestId id) {
  ReplyInterrupt interrupt;
  std::string reply;
  bool stopped = false;
  while (engine.has_unfinished()) {
    if (interrupt.requested() && !stopped) {
      engine.abort(id);
      stopped = true;
    }
    for (const RequestOutput& o : engine.step()) {
      if (o.id != id || stopped) continue;
      fmt::print("{}", o.text_delta);
      std::fflush(stdout);
      reply += o.text_delta;
    }
  }
  fmt::print("\n");
  if (stopped) fmt::print(stderr, "(reply stopped)\n");
  return reply;
}

// Runs one user turn: the reply joins the history, or an error leaves the history as it was
// (false).
bool run_turn(Engine& engine, const ChatArgs& a, std::vector<ChatMessage>& history,
              const std::string& line) {
  history.push_back({"user", line});
  RequestId id = 0;
  try {
    // encode_chat: the user's text stays text (no control tokens from what they type).
    const std::vector<int32_t> ids = engine.encode_chat(history, true);
    id = engine.add_request(ids, fit_to_context(engine, a.sampling.get(), ids.size()));
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    history.pop_back();
    return false;
  }
  history.push_back({"assistant", stream_reply(engine, id)});
  return true;
}

// "(history: 2 messages: user 26 chars, assistant 113 chars)" on stderr.
void print_history(const std::vector<ChatMessage>& history) {
  std::string parts;
  for (const ChatMessage& m : history) {
    parts += fmt::format("{}{} {} chars", parts.empty() ? "" : ", ", m.role, m.content.size());
  }
  fmt::print(stderr, "(history: {} messages{}{})\n", history.size(), parts.empty() ? "" : ": ",
             parts);
}

void run_chat(const ChatArgs& a) {
  TensorParallelRanks ranks(a.engine);
  if (ranks.served()) return;  // this process was another rank of the group
  const auto trace = a.engine.open_memory_trace();
  Engine engine(ranks.config());
  attach_memory_trace(engine, trace);
  LineReader input;
  std::vector<ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  if (input.interactive()) {
    fmt::print(stderr,
               "nanocascade chat: /exit or Ctrl-D to quit, /reset to start over, /history to "
               "list the conversation, Ctrl-C stops a reply\n");
  }
  int turns = 0, failed = 0;
  for (;;) {
    const std::optional<std::string> line = input.read("> ");
    if (!line) {
      if (input.interactive()) fmt::print("\n");  // Ctrl-D leaves the cursor on the prompt
      break;
    }
    if (*line == "/exit" || *line == "/quit") break;
    if (*line == "/reset") {
      history.resize(a.system.empty() ? 0 : 1);
      fmt::print(stderr, "(conversation reset)\n");
      continue;
    }
    if (*line == "/history") {
      print_history(history);
      continue;
    }
    if (line->empty()) continue;
    ++turns;
    if (!run_turn(engine, a, history, *line)) ++failed;
  }
  // A script's chat (stdin not a terminal) that lost a turn fails, as a batch job would; each
  // error was printed when it happened.
  NC_CHECK(input.interactive() || failed == 0, "chat: {} of {} turns failed", failed, turns);
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto args = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand(
      "chat", "interactive multi-turn chat (/exit, /reset, /history; Ctrl-C stops a reply)");
  cmd->add_option("--system", args->system, "system prompt");
  args->engine.add_to(*cmd);
  args->sampling.add_to(*cmd);
  cmd->callback([args] { run_chat(*args); });
}

}  // namespace nc::cli
