#!/usr/bin/env python3
"""`nanocascade chat` driven through tmux, as a user at a terminal would (issue #19).

Run from the repository root after a build (`make test` runs it):

    python3 tests/cli/test_chat_tmux.py
    NANOCASCADE_BIN=path/to/nanocascade python3 tests/cli/test_chat_tmux.py

Each test starts `chat` on the default model (CPU) in a tmux session of its own, on a tmux
server of its own (-L), and reads the screen with capture-pane: a message is answered; Ctrl-C
during the reply stops it (the screen stops changing) and the prompt comes back; /history shows
the stopped reply kept in the conversation, and a second message continues it; the up arrow
recalls the last line (no "^[[A" typed); Ctrl-C at the prompt, or Ctrl-D, quits with status 0.
Skipped, saying why, without tmux, the binary or the default model.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NANOCASCADE_BIN", os.path.join(ROOT, "build", "nanocascade"))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TMUX = shutil.which("tmux")

SKIP = None
if TMUX is None:
    SKIP = "tmux is not installed (tools/setup.sh installs it): the tmux-driven chat tests skip"
elif not os.path.exists(BIN):
    SKIP = f"no binary at {BIN}: build first"
elif not os.path.exists(MODEL):
    SKIP = f"no default model at {MODEL}"


class Screen:
    """One `chat` in a detached tmux session on a private tmux server."""

    def __init__(self, args):
        self.sock = f"nc-chat-test-{os.getpid()}-{time.monotonic_ns()}"
        # Through sh, which prints the program's exit status (128 + n for signal n) on the screen:
        # tmux's own pane_dead_status is not always there when the pane is marked dead.
        cmd = " ".join([shlex.quote(BIN), *map(shlex.quote, args)])
        # `trap : INT` keeps sh alive through the Ctrl-Cs (a handler, not SIG_IGN: the program
        # starts with SIGINT at its default).
        cmd = "sh -c " + shlex.quote("trap : INT; " + cmd + '; echo "[exit status $?]"')
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "chat", "-x", "160", "-y", "50",
                  cmd)
        # Keep the pane after the program ends, to read its exit status.
        self.tmux("set-option", "-t", "chat", "remain-on-exit", "on")

    def tmux(self, *args):
        r = subprocess.run([TMUX, "-L", self.sock, *args], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def close(self):
        subprocess.run([TMUX, "-L", self.sock, "kill-server"], capture_output=True, timeout=30)

    def text(self):
        """The pane, scroll-back included, wrapped lines joined, without the blank rows below."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "chat", "-S", "-5000").rstrip()

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "chat", *keys)

    def type(self, line):
        self.tmux("send-keys", "-t", "chat", "-l", line)
        self.keys("Enter")

    def wait_for(self, pred, what, timeout=90):
        deadline = time.monotonic() + timeout
        while True:
            t = self.text()
            if pred(t):
                return t
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{t}")
            time.sleep(0.1)

    def wait_prompt(self, after=0, timeout=90):
        """Waits for an empty prompt ("> " alone on the last line) after `after` characters."""
        return self.wait_for(lambda t: re.search(r"(^|\n)>$", t) is not None
                             and t[after:].strip() != "", "the prompt", timeout)

    def dead_status(self, timeout=30):
        """The program's exit status once it has ended, as sh printed it (130: SIGINT); None
        when the pane died without that line."""
        deadline = time.monotonic() + timeout
        dead_since = None
        while time.monotonic() < deadline:
            found = re.findall(r"\[exit status (\d+)\]", self.text())
            if found:
                return int(found[-1])
            if self.tmux("display-message", "-p", "-t", "chat", "#{pane_dead}").strip() == "1":
                dead_since = dead_since or time.monotonic()
                if time.monotonic() - dead_since > 1.5:  # the line is printed before sh ends
                    return None
            time.sleep(0.1)
        raise AssertionError(f"chat did not quit; the screen:\n{self.text()}")


@unittest.skipIf(SKIP is not None, SKIP or "")
class ChatInTmux(unittest.TestCase):
    ARGS = ["chat", "-n", "3000", "--ignore-eos", "-t", "0"]

    def start(self):
        s = Screen(self.ARGS)
        self.addCleanup(s.close)
        s.wait_prompt(timeout=120)  # the model loads
        return s

    def reply_then_ctrl_c(self, s, message):
        """Sends `message`, waits for some of its reply, Ctrl-C; checks it stopped."""
        before = len(s.text())
        s.type(message)
        mark = f"> {message}"
        # Some reply text below the message line.
        s.wait_for(lambda t: mark in t and len(t.split(mark, 1)[1].strip()) >= 20,
                   "some of the reply")
        s.keys("C-c")
        t = s.wait_for(lambda t: "(reply stopped)" in t.split(mark, 1)[1], "(reply stopped)")
        s.wait_prompt(after=before)
        # The reply no longer grows.
        reply = t.split(mark, 1)[1].split("(reply stopped)", 1)[0]
        time.sleep(1.0)
        again = s.text().split(mark, 1)[1].split("(reply stopped)", 1)[0]
        self.assertEqual(reply, again, "the reply went on after Ctrl-C")
        self.assertTrue(reply.strip(), "no reply text shown before the Ctrl-C")
        return reply

    def history(self, s):
        """The roles /history lists, e.g. ["user", "assistant"]."""
        before = len(s.text())
        s.type("/history")
        t = s.wait_for(lambda t: re.search(r"\(history: \d+ messages", t[before:]) is not None,
                       "the /history line")
        line = re.findall(r"\(history: (\d+) messages:?([^)]*)\)", t[before:])[-1]
        s.wait_prompt(after=before)
        roles = re.findall(r"(user|assistant|system) \d+ chars", line[1])
        self.assertEqual(int(line[0]), len(roles), line)
        return roles

    def test_ctrl_c_stops_the_reply_and_the_conversation_goes_on(self):
        s = self.start()
        self.reply_then_ctrl_c(s, "Tell me a very long story.")
        self.assertEqual(self.history(s), ["user", "assistant"])  # the stopped reply is kept
        self.reply_then_ctrl_c(s, "And another one.")
        self.assertEqual(self.history(s), ["user", "assistant", "user", "assistant"])
        # Up arrow: the last line again on the prompt, not an escape code.
        s.keys("Up")
        s.wait_for(lambda t: t.rstrip().endswith("> /history"), "the recalled line")
        self.assertNotIn("^[[A", s.text())
        s.keys("C-u")  # clear the line
        time.sleep(0.3)
        s.keys("C-c")  # Ctrl-C at the prompt quits
        status = s.dead_status()
        self.assertIn(status, (0, 130), s.text())

    def test_ctrl_d_quits(self):
        s = self.start()
        self.reply_then_ctrl_c(s, "hello there")
        s.keys("C-d")  # on an empty line
        self.assertEqual(s.dead_status(), 0, s.text())


if __name__ == "__main__":
    if SKIP:
        print(f"test_chat_tmux: skipped: {SKIP}")
    unittest.main()
