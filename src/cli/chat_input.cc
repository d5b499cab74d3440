#include "cli/chat_input.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/error.h"

#if NC_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace nc::cli {

LineReader::LineReader() : tty_(isatty(fileno(stdin)) != 0) {
#if NC_HAVE_LIBEDIT
  editing_ = tty_;
  if (editing_) using_history();
#endif
}

std::optional<std::string> LineReader::read(const char* prompt) {
#if NC_HAVE_LIBEDIT
  if (editing_) {
    char* raw = readline(prompt);
    if (raw == nullptr) return std::nullopt;
    std::string line(raw);
    std::free(raw);
    if (!line.empty()) add_history(line.c_str());
    return line;
  }
#endif
  if (tty_) {
    std::fputs(prompt, stdout);
    std::fflush(stdout);
  }
  std::string line;
  if (!std::getline(std::cin, line)) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();  // a CRLF file: "/exit\r" is /exit
  return line;
}

namespace {

volatile sig_atomic_t g_interrupted = 0;

void on_sigint(int) {
  g_interrupted = 1;
}

}  // namespace

ReplyInterrupt::ReplyInterrupt() {
  g_interrupted = 0;
  struct sigaction sa = {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a write to the terminal goes on after Ctrl-C
  NC_CHECK(sigaction(SIGINT, &sa, &previous_) == 0, "chat: cannot install a SIGINT handler");
}

ReplyInterrupt::~ReplyInterrupt() {
  sigaction(SIGINT, &previous_, nullptr);
}

bool ReplyInterrupt::requested() const {
  return g_interrupted != 0;
}

}  // namespace nc::cli
