#!/usr/bin/env python3
"""Two `nanocascade serve` replicas behind SGLang's model gateway (PyPI `sglang-router`, a
prebuilt Rust binary in a wheel) with its cache-aware policy, all on the loopback: chat traffic
through the gateway (streamed and not), each conversation's later turn answered by the replica
that answered its first (the cache-aware policy; the replicas' /metrics say which). docs/server.md ("Behind a router") shows the commands.

The wheel is installed into the test venv (build/pyenv, as the openai client is); when it cannot
be installed on this machine the test is skipped, saying why. Run as test_openai_client.py is:

    python3 tests/server/test_router.py
"""
import json
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
        cls.replicas = [Server(), Server()]  # each returns once it listens
        cls.port = free_port()
        urls = [f"http://127.0.0.1:{s.port}" for s in cls.replicas]
        cls.router = subprocess.Popen(
            [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1",
             "--port", str(cls.port), "--worker-urls", *urls, "--policy", "cache_aware",
             "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cls.client = openai.OpenAI(base_url=f"http://127.0.0.1:{cls.port}/v1", api_key="none",
                                   max_retries=0, timeout=120)
        # Up once it has registered both replicas (it checks their health first).
        deadline = time.time() + 90
        while time.time() < deadline:
            if cls.router.poll() is not None:
                raise RuntimeError("the router exited: " + cls.router.stderr.read()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{cls.port}/workers",
                                            timeout=2) as r:
                    if len(json.load(r)["workers"]) == 2:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the router did not register both replicas")

    @classmethod
    def tearDownClass(cls):
        cls.router.terminate()
        try:
            cls.router.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.router.kill()
        for s in cls.replicas:
            s.stop()

    def served(self):
        return [served_requests(s.port) for s in self.replicas]

    def test_gateway_registers_both_replicas_with_their_model(self):
        # The gateway reads each replica's /get_model_info (SGLang's route) when it registers it.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/workers", timeout=10) as r:
            workers = json.load(r)["workers"]
        self.assertEqual(sorted(w["url"] for w in workers),
                         sorted(f"http://127.0.0.1:{s.port}" for s in self.replicas))
        for w in workers:
            self.assertTrue(w["is_healthy"], w)
            self.assertEqual(w["model_id"], MODEL_ID, w)

    def test_chat_traffic_through_the_gateway(self):
        # Conversations with long distinct prompts, sent one request at a time so that each
        # request's replica shows in the replicas' counters. The cache-aware policy sends a
        # conversation's later turns where its prefix is cached: the replica of its first turn.
        topics = ("the sea", "mountains", "cities", "music")
        history = {t: [{"role": "system", "content": f"You are an expert on {t}. " * 12}]
                   for t in topics}
        replica_of = {}
        for turn in range(2):
            for t in topics:
                msgs = history[t] + [{"role": "user",
                                      "content": f"Turn {turn}: tell me about {t}. " * 4}]
                before = self.served()
                r = self.client.chat.completions.create(model=MODEL_ID, messages=msgs,
                                                        max_tokens=6, temperature=0)
                delta = [a - b for a, b in zip(self.served(), before)]
                self.assertEqual(sorted(delta), [0, 1], delta)  # one replica answered it
                self.assertEqual(r.choices[0].message.role, "assistant")
                self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
                replica = delta.index(1)
                if turn == 0:
                    replica_of[t] = replica
                else:
                    self.assertEqual(replica, replica_of[t], f"conversation about {t} moved")
                history[t] = msgs + [{"role": "assistant", "content": r.choices[0].message.content}]
        print(f"replicas of the conversations: {replica_of}", file=sys.stderr)
        # Streaming through the gateway gives the same text as a whole response.
        hi = [{"role": "user", "content": "Hi!"}]
        chunks = self.client.chat.completions.create(model=MODEL_ID, messages=hi, max_tokens=6,
                                                     temperature=0, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        whole = self.client.chat.completions.create(model=MODEL_ID, messages=hi, max_tokens=6,
                                                    temperature=0).choices[0].message.content
        self.assertEqual(text, whole)


if __name__ == "__main__":
    run_suite()
