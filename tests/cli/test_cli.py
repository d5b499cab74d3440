#!/usr/bin/env python3
"""End-to-end checks of the `nanocascade` command line (issue #19).

Run from the repository root after a build:

    python3 tests/cli/test_cli.py                      # uses build/nanocascade
    NANOCASCADE_BIN=path/to/nanocascade python3 tests/cli/test_cli.py

Needs the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf; the tests that run it are
skipped when it is absent). `chat` runs in a pseudo-terminal: Ctrl-C during a reply stops the reply
and the conversation goes on; Ctrl-C at the prompt and Ctrl-D quit; the up arrow recalls a line
(libedit) instead of typing an escape code. Every process is started and ended by its test.
"""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NANOCASCADE_BIN", os.path.join(ROOT, "build", "nanocascade"))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
HAVE_MODEL = os.path.exists(MODEL)


def run(*args, timeout=120):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


class Flags(unittest.TestCase):
    def test_version(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^nanocascade \d+\.\d+\.\d+")

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_stop_does_not_swallow_the_prompt(self):
        r = run("generate", "--stop", ".", "The capital of France is", "-n", "8", "-t", "0", "-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("no prompts", r.stderr)
        self.assertTrue(r.stdout.strip(), "no completion printed")

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_repeated_vector_flags_keep_every_prompt(self):
        r = run("generate", "--stop", ".", "--stop", ",", "--stop-token-id", "2",
                "--stop-token-id", "0", "first prompt", "second prompt", "-n", "4", "-t", "0", "-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("=== [0] first prompt", r.stdout)
        self.assertIn("=== [1] second prompt", r.stdout)

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_tensor_parallel_generates_and_names_a_size_that_does_not_split(self):
        # SmolLM2: 9 heads, 3 KV heads, 1536 MLP features: 3 ranks split it, 2 do not.
        r = run("generate", "--tensor-parallel-size", "3", "The capital of France is", "-n", "4",
                "-t", "0", "-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Paris", r.stdout)
        r = run("generate", "--tensor-parallel-size", "2", "prompt", "-n", "2", "-q")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not divide the model's 9 attention heads", r.stderr + r.stdout)

    def test_a_count_below_one_names_the_range_one_can_type(self):
        r = run("generate", "prompt", "--max-num-seqs", "0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--max-num-seqs: Value 0 not in range 1 to 2147483647", r.stderr + r.stdout)

    @unittest.skipUnless(HAVE_MODEL and os.path.exists("/dev/full"), "no model or /dev/full")
    def test_output_that_cannot_be_written_fails(self):
        with open("/dev/full", "w") as full:
            r = subprocess.run([BIN, "tokenize", "Hello"], stdout=full, stderr=subprocess.PIPE,
                               text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("writing the output failed", r.stderr)

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_chat_reads_crlf_lines_as_their_commands(self):
        # "/exit\r\n" from a Windows-edited file is /exit: the question after it is never asked.
        r = subprocess.run([BIN, "chat", "-t", "0", "-n", "4"],
                           input="Hi\r\n/exit\r\nWhat is 2+2?\r\n", capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        replies = [line for line in r.stdout.splitlines() if line.strip()]
        self.assertEqual(len(replies), 1, r.stdout)  # "Hi" only (a reply a line, not a tty)

    def test_bench_refuses_an_unwritable_json_path_before_it_runs(self):
        r = run("bench", "--json", "/nonexistent-dir/results.json", "--num-requests", "1",
                timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot write --json /nonexistent-dir/results.json", r.stderr)

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_a_scripted_chat_that_lost_a_turn_fails(self):
        r = subprocess.run([BIN, "chat", "--max-model-len", "8"], input="Hi\n",
                           capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("chat: 1 of 1 turns failed", r.stderr)

    def test_stop_without_value_is_an_error(self):
        r = run("generate", "prompt", "--stop")
        self.assertNotEqual(r.returncode, 0)

    def test_unknown_cpu_activations_is_an_error_naming_it(self):
        r = run("generate", "prompt", "--cpu-activations", "int4")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("int4", r.stderr + r.stdout)

    @unittest.skipUnless(HAVE_MODEL, "no default model")
    def test_a_chat_template_file_that_cannot_be_read_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            for path in (os.path.join(d, "missing.jinja"), os.path.join(d, "empty.jinja")):
                if path.endswith("empty.jinja"):
                    open(path, "w").close()
                r = run("generate", "--chat", "hi", "--chat-template", path)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(path, r.stderr + r.stdout)


@unittest.skipUnless(HAVE_MODEL, "no default model")
class Streaming(unittest.TestCase):
    """--streaming-window (docs/long_context.md): a stream past --max-model-len in bounded pages."""

    def test_bench_streams_past_the_context_in_bounded_pages(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bench.json")
            r = run("bench", "--workload", "shared-prefix", "--groups", "1",
                    "--prompts-per-group", "1", "--system-len", "16", "--question-len", "4",
                    "--output-len", "120", "--max-model-len", "64", "--page-size", "8",
                    "--streaming-window", "32", "--json", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            # 1 sink page + 4 window pages + 1, though 140 tokens pass 64 positions.
            self.assertIn("streaming: window 32 tokens + 1 sink pages, at most 6 pages", r.stdout)
            with open(path) as f:
                s = json.load(f)["streaming"]
            self.assertEqual(s["page_bound"], 6)
            self.assertLessEqual(s["peak_request_pages"], 6)
            self.assertGreaterEqual(s["evicted_tokens"], 140 - 8 - 32 - 8)

    def test_a_window_smaller_than_a_page_is_named(self):
        r = run("generate", "hi", "--page-size", "16", "--streaming-window", "8", "-n", "1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("smaller than a page", r.stderr + r.stdout)


class TinyVocabulary(unittest.TestCase):
    def test_bench_draws_ids_inside_a_vocabulary_smaller_than_its_range(self):
        # The workloads draw ids in [0, 10000]; tests/data/tiny-llama3-128k.json has 512.
        tiny = os.path.join(ROOT, "tests", "data", "tiny-llama3-128k.json")
        for workload in ("nano-vllm", "shared-prefix"):
            with self.subTest(workload=workload):
                r = run("bench", "--model", tiny, "--load-format", "dummy", "--workload",
                        workload, "--num-requests", "2", "--max-input", "100",
                        "--max-output", "100", "--groups", "1", "--prompts-per-group", "2",
                        "--system-len", "16", "--question-len", "4", "--output-len", "2",
                        "--max-model-len", "512")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("throughput:", r.stdout)


@unittest.skipUnless(HAVE_MODEL, "no default model")
class Bench(unittest.TestCase):
    def test_cpu_bench_prints_only_what_it_measured(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bench.json")
            r = run("bench", "--workload", "shared-prefix", "--groups", "1",
                    "--prompts-per-group", "2", "--system-len", "16", "--question-len", "4",
                    "--output-len", "4", "--json", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("throughput:", r.stdout)
            for gpu_only in ("device:", "cuda graph", "sampled on the device", "ms device"):
                self.assertNotIn(gpu_only, r.stdout)
            with open(path) as f:
                j = json.load(f)
            for key in ("cuda_graphs", "device_s", "graph_steps", "device_sampled", "time_s"):
                self.assertIn(key, j)
            self.assertEqual(j["cpu_activations"], "int8")  # the default
            self.assertIn("cpu: activations int8,", r.stdout)

    def test_cpu_activations_flag_wins_over_the_variable_and_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bench.json")
            r = subprocess.run(
                [BIN, "bench", "--workload", "shared-prefix", "--groups", "1",
                 "--prompts-per-group", "1", "--system-len", "8", "--question-len", "4",
                 "--output-len", "2", "--cpu-activations", "int16", "--json", path],
                capture_output=True, text=True, timeout=120,
                env={**os.environ, "NC_CPU_ACTIVATIONS": "f32"})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("cpu: activations int16,", r.stdout)
            with open(path) as f:
                self.assertEqual(json.load(f)["cpu_activations"], "int16")


class Pty:
    """A child process on a pseudo-terminal, read with a deadline."""

    def __init__(self, args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(args[0], args)
        self.out = ""

    def send(self, text):
        os.write(self.fd, text.encode())

    def expect(self, pattern, timeout=60):
        """Reads until `pattern` matches the output after the last match; returns the text."""
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.out)
            if m:
                seen, self.out = self.out[: m.end()], self.out[m.end():]
                return seen
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output: {self.out!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited waiting for {pattern!r}; output: {self.out!r}")
                self.out += chunk.decode(errors="replace")

    def wait(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return status
            try:  # drain so that the child never blocks on a full terminal
                if select.select([self.fd], [], [], 0.1)[0]:
                    os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise AssertionError("chat did not exit")

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


@unittest.skipUnless(HAVE_MODEL, "no default model")
class Chat(unittest.TestCase):
    ARGS = ["chat", "-n", "3000", "--ignore-eos", "-t", "0"]

    def start(self):
        p = Pty([BIN, *self.ARGS])
        self.addCleanup(p.kill)
        p.expect(r"> ")
        return p

    def interrupt_reply(self, p):
        # Wait for some of the reply, then Ctrl-C: the reply stops and the prompt comes back.
        time.sleep(1.0)
        p.expect(r"\S", timeout=60)
        p.send("\x03")
        p.expect(r"\(reply stopped\)", timeout=60)
        p.expect(r"> ")

    def test_ctrl_c_stops_the_reply_and_the_conversation_goes_on(self):
        p = self.start()
        p.send("Tell me a very long story.\r")
        self.interrupt_reply(p)
        p.send("And another one.\r")  # a second turn on the kept conversation
        self.interrupt_reply(p)
        # Ctrl-C at the prompt quits. Wait for the editor to take the terminal first: a Ctrl-C
        # typed before it does reaches the process as SIGINT, and while the reply's handler
        # (cli/chat_input.cc, ReplyInterrupt) is still installed it is taken as a reply
        # interrupt and lost (seen once in a fresh-clone `make test` under load).
        time.sleep(0.5)
        p.send("\x03")
        status = p.wait()
        self.assertTrue(os.WIFSIGNALED(status) or os.WIFEXITED(status))

    def test_ctrl_d_quits_and_arrows_recall_history(self):
        p = self.start()
        p.send("hello there\r")
        self.interrupt_reply(p)
        # Up arrow: the last line again, not "^[[A". (Wait for the editor to take the terminal:
        # keys typed before it does are echoed by the terminal driver itself.)
        time.sleep(0.5)
        p.send("\x1b[A")
        seen = p.expect(r"hello there", timeout=10)
        self.assertNotIn("^[[A", seen)
        p.send("\x15")  # Ctrl-U: clear the line
        time.sleep(0.2)
        p.send("\x04")  # Ctrl-D on an empty line quits
        status = p.wait()
        self.assertTrue(os.WIFEXITED(status), status)
        self.assertEqual(os.WEXITSTATUS(status), 0)


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"no binary at {BIN}: build first")
    unittest.main()
