// Terminal input for `nanocascade chat`: a line reader with editing and history (libedit's
// readline interface where the build found libedit and stdin is a terminal; plain lines
// otherwise), and the SIGINT handling of a streaming reply. While a ReplyInterrupt lives, Ctrl-C
// sets a flag that the reply loop polls (it aborts the request and the conversation goes on);
// outside it, SIGINT has its previous disposition, so Ctrl-C at the prompt quits, as Ctrl-D does.
#pragma once
#include <signal.h>

#include <optional>
#include <string>

namespace nc::cli {

class LineReader {
 public:
  LineReader();
  // The next line without its newline, or nullopt at end of input (Ctrl-D). `prompt` is shown
  // only when stdin is a terminal. Non-empty lines go to the history (arrow keys recall them).
  std::optional<std::string> read(const char* prompt);
  bool interactive() const { return tty_; }
  bool editing() const { return editing_; }

 private:
  bool tty_ = false;
  bool editing_ = false;  // libedit in use
};

// Catches SIGINT (and only SIGINT) for its lifetime; restores the previous action after.
// One at a time (the flag is process-wide).
class ReplyInterrupt {
 public:
  ReplyInterrupt();
  ~ReplyInterrupt();
  ReplyInterrupt(const ReplyInterrupt&) = delete;
  ReplyInterrupt& operator=(const ReplyInterrupt&) = delete;
  // Whether Ctrl-C came since construction.
  bool requested() const;

 private:
  struct sigaction previous_ = {};
};

}  // namespace nc::cli
