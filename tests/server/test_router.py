#!/usr/bin/env python3
"""Two `nanocascade serve` replicas behind SGLang's model gateway (PyPI `sglang-router`, a
prebuilt Rust binary in a wheel) with its cache-aware policy, all on the loopback: chat traffic
through the gateway (streamed and not), conversations that share a prefix, and both replicas
serving some of it (their /metrics). docs/server.md ("Behind a router") shows the commands.

The wheel is installed into the test venv (build/pyenv, as the openai client is); when it cannot
be installed on this machine the test is skipped, saying why. Run as test_openai_client.py is:

    python3 tests/server/test_router.py
"""
import os
import re
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai_client import MODEL_ID, Server, run_suite  # noqa: E402

ROUTER_PKG = "sglang-router==0.3.2"


def router_importable():
    """(True, "") once sglang_router imports, else (False, why)."""
    try:
        import sglang_router.launch_router  # noqa: F401
        return True, ""
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", ROUTER_PKG],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"pip install {ROUTER_PKG} failed: {r.stderr.strip()[-300:]}"
    try:
        import sglang_router.launch_router  # noqa: F401
        return True, ""
    except ImportError as e:
        return False, f"{ROUTER_PKG} installed but does not import: {e}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_requests(port):
    """The replica's count of finished requests (its Prometheus /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    # vLLM's name (docs/server.md), one line per finish reason.
    return sum(float(v) for v in
               re.findall(r"^vllm:request_success_total\{[^}]*\}\s+([0-9.e+]+)", text, re.M))


class RouterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, why = router_importable()
        if not ok:
            raise unittest.SkipTest(why)
        import openai
        cls.replicas = [Server(), Server()]
        cls.port = free_port()
        urls = [f"http://127.0.0.1:{s.port}" for s in cls.replicas]
        cls.router = subprocess.Popen(
            [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1",
             "--port", str(cls.port), "--worker-urls", *urls, "--policy", "cache_aware",
             "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cls.client = openai.OpenAI(base_url=f"http://127.0.0.1:{cls.port}/v1", api_key="none",
                                   max_retries=0, timeout=120)
        deadline = time.time() + 90
        while time.time() < deadline:
            if cls.router.poll() is not None:
                raise RuntimeError("the router exited: " + cls.router.stderr.read()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{cls.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the router did not come up")

    @classmethod
    def tearDownClass(cls):
        cls.router.terminate()
        try:
            cls.router.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.router.kill()
        for s in cls.replicas:
            s.stop()

    def test_chat_traffic_through_the_gateway(self):
        before = [served_requests(s.port) for s in self.replicas]
        # Two conversations with long distinct system prompts: the cache-aware policy keeps
        # each on the replica that holds its prefix, and spreads them at first.
        systems = [("You are a helpful assistant about " + topic + ". ") * 12
                   for topic in ("the sea", "mountains", "cities", "music")]
        answers = []
        for turn in range(2):
            for sys_prompt in systems:
                msgs = [{"role": "system", "content": sys_prompt},
                        {"role": "user", "content": f"Question {turn}: say something."}]
                r = self.client.chat.completions.create(model=MODEL_ID, messages=msgs,
                                                        max_tokens=6, temperature=0)
                self.assertEqual(r.choices[0].message.role, "assistant")
                self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
                answers.append(r.choices[0].message.content)
        # Streaming through the gateway.
        chunks = list(self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Hi!"}], max_tokens=6,
            temperature=0, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        whole = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Hi!"}], max_tokens=6,
            temperature=0).choices[0].message.content
        self.assertEqual(text, whole)
        after = [served_requests(s.port) for s in self.replicas]
        served = [a - b for a, b in zip(after, before)]
        self.assertEqual(sum(served), len(answers) + 2, served)
        self.assertTrue(all(n > 0 for n in served), f"one replica served everything: {served}")


if __name__ == "__main__":
    run_suite()
