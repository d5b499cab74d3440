#!/usr/bin/env python3
"""End-to-end check of `nanocascade serve` with the official `openai` Python client.

Optional (the C++ suite does not need it). Run from the repository root after a build:

    python3 tests/server/test_openai_client.py            # uses build/nanocascade
    NANOCASCADE_BIN=path/to/nanocascade python3 tests/server/test_openai_client.py

Without the `openai` and `jsonschema` packages it creates a venv under build/pyenv, installs
them there (needs network access once) and re-runs itself with it. It starts the server on a free loopback port
with the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf; skipped when absent), and
compares the server's greedy outputs with `nanocascade generate` for the same prompt.
"""
import os
import re
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "build", "pyenv")
BIN = os.environ.get("NANOCASCADE_BIN", os.path.join(ROOT, "build", "nanocascade"))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
API_KEY = "sk-nanocascade-test"


# What the server suites import: the openai client, jsonschema (structured output's checks),
# gguf (ggml-org's GGUF reader/writer: tests/server/mistral_controls.py) and the anthropic client
# (tests/server/test_anthropic_api.py).
PACKAGES = ("openai", "jsonschema", "gguf", "anthropic")


def ensure_openai():
    import importlib.util
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if not missing:
        return
    py = os.path.join(VENV, "bin", "python")
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    if in_venv and os.environ.get("NC_PYENV_INSTALLED"):
        sys.exit(f"{', '.join(missing)} not importable even in {VENV}")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    # All of them: one found outside the venv (a system jsonschema) is not visible inside it.
    subprocess.check_call([py, "-m", "pip", "install", "--quiet", *PACKAGES])
    os.environ["NC_PYENV_INSTALLED"] = "1"
    os.execv(py, [py] + sys.argv)


class Server:
    """`nanocascade serve` on a free port; the port comes from its startup line."""

    def __init__(self, *extra, model=MODEL):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--model", model, "--port", "0", "--max-num-seqs", "8", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("the server did not start")

    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a clean shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def generate_cli(prompt, max_tokens, chat):
    args = [BIN, "generate", "--model", MODEL, "-t", "0", "-n", str(max_tokens), "--quiet", prompt]
    if chat:
        args.append("--chat")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return out[:-1] if out.endswith("\n") else out


class ServerTestCase(unittest.TestCase):
    """A server started once per class (SERVER_ARGS, over the GGUF model_path() names), an openai
    client for it, and its root URL."""
    SERVER_ARGS = ()

    @classmethod
    def model_path(cls):
        return MODEL

    @classmethod
    def setUpClass(cls):
        import openai
        cls.openai = openai
        cls.server = Server(*cls.SERVER_ARGS, model=cls.model_path())
        cls.client = openai.OpenAI(base_url=cls.server.url(), api_key="none", max_retries=0)
        cls.root = f"http://127.0.0.1:{cls.server.port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import openai
        cls.openai = openai
        cls.server = Server("--api-key", API_KEY)
        cls.client = openai.OpenAI(base_url=cls.server.url(), api_key=API_KEY, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        # A clean exit on SIGTERM.
        assert cls.server.proc.returncode == 0, cls.server.proc.returncode

    def test_models(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [MODEL_ID])

    def test_chat_matches_cli_and_stream(self):
        prompt = "What is the capital of France?"
        r = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": prompt}],
            max_tokens=24, temperature=0)
        text = r.choices[0].message.content
        self.assertEqual(text, generate_cli(prompt, 24, chat=True))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertGreater(r.usage.prompt_tokens, 5)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))

        stream = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": prompt}],
            max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True})
        parts, usage, reasons = [], None, []
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    reasons.append(c.finish_reason)
        self.assertEqual("".join(parts), text)
        self.assertEqual(reasons, [r.choices[0].finish_reason])
        self.assertEqual(usage.completion_tokens, r.usage.completion_tokens)
        self.assertEqual(usage.prompt_tokens, r.usage.prompt_tokens)

    def test_completion_matches_cli_and_stops(self):
        prompt = "Once upon a time"
        r = self.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=20,
                                           temperature=0)
        text = r.choices[0].text
        self.assertEqual(text, generate_cli(prompt, 20, chat=False))
        words = text.split()
        if len(words) >= 3:
            stop = " " + words[2]
            r2 = self.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=20,
                                                temperature=0, stop=[stop])
            self.assertEqual(r2.choices[0].text, text[:text.find(stop)])
            self.assertEqual(r2.choices[0].finish_reason, "stop")

    def test_a_batch_of_prompts_answers_each_as_alone(self):
        # lm-evaluation-harness's way: several prompts in one request, echo and logprobs for
        # log-likelihoods. Each prompt's choice is what the prompt alone gives.
        prompts = ["Once upon a time", "The capital of France is", "1, 2, 3,"]
        kw = dict(model=MODEL_ID, max_tokens=8, temperature=0, logprobs=1, echo=True)
        r = self.client.completions.create(prompt=prompts, **kw)
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        alone = [self.client.completions.create(prompt=p, **kw) for p in prompts]
        for c, a in zip(r.choices, alone):
            self.assertEqual(c.text, a.choices[0].text)
            self.assertTrue(c.text.startswith(prompts[c.index]))
            self.assertEqual(c.logprobs.tokens, a.choices[0].logprobs.tokens)
            for x, y in zip(c.logprobs.token_logprobs[1:], a.choices[0].logprobs.token_logprobs[1:]):
                self.assertAlmostEqual(x, y, places=3)
        self.assertEqual(r.usage.prompt_tokens, sum(a.usage.prompt_tokens for a in alone))
        self.assertEqual(r.usage.completion_tokens,
                         sum(a.usage.completion_tokens for a in alone))
        with self.assertRaises(self.openai.BadRequestError) as e:
            self.client.completions.create(prompt=prompts, stream=True, **kw)
        self.assertEqual(e.exception.param, "stream")

    def test_seeded_sampling_is_reproducible(self):
        kw = dict(model=MODEL_ID, messages=[{"role": "user", "content": "Tell me a joke."}],
                  max_tokens=16, temperature=0.8, top_p=0.95, seed=7)
        a = self.client.chat.completions.create(**kw).choices[0].message.content
        b = self.client.chat.completions.create(**kw).choices[0].message.content
        self.assertEqual(a, b)

    def test_errors(self):
        o = self.openai
        with self.assertRaises(o.NotFoundError):
            self.client.chat.completions.create(
                model="gpt-4", messages=[{"role": "user", "content": "x"}])
        with self.assertRaises(o.BadRequestError) as e:  # above --max-n (16)
            self.client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "x"}], n=17)
        self.assertEqual(e.exception.param, "n")
        with self.assertRaises(o.BadRequestError):
            self.client.chat.completions.create(model=MODEL_ID, messages=[])
        with self.assertRaises(o.BadRequestError):
            self.client.completions.create(model=MODEL_ID, prompt="x", max_tokens=10 ** 7)
        bad = o.OpenAI(base_url=self.server.url(), api_key="wrong", max_retries=0)
        with self.assertRaises(o.AuthenticationError):
            bad.models.list()


def run_suite():
    """Runs the calling module's tests against the default model (skips when it or the binary
    is missing); the openai package is made importable first."""
    if not os.path.exists(MODEL) or not os.path.exists(BIN):
        print(f"SKIP: needs {MODEL} and {BIN}")
        sys.exit(0)
    ensure_openai()
    unittest.main(module="__main__", verbosity=2)


if __name__ == "__main__":
    run_suite()
