#!/usr/bin/env python3
"""End-to-end checks of `nanocascade memory` and `--memory-trace` (issue #15).

Run from the repository root after a build:

    python3 tests/cli/test_memory_cli.py               # uses build/nanocascade

The plan's numbers are checked against the engine's own summary line of `generate` (same config);
the trace of a short run must be a JSON array of Chrome trace events with pages by state at each
step; bad input (an unwritable trace path, a plan that fits no request) fails before any work.
"""
import json
import os
import re
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NANOCASCADE_BIN", os.path.join(ROOT, "build", "nanocascade"))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
HAVE_MODEL = os.path.exists(MODEL)


def run(*args, timeout=120):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


@unittest.skipUnless(HAVE_MODEL, "no default model")
class Memory(unittest.TestCase):
    def test_plan_equals_the_engine(self):
        flags = ["--max-model-len", "2048", "--kv-cache-memory", "64MiB", "--max-num-seqs", "4"]
        r = run("memory", "--json", "--request-len", "500", *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        plan = json.loads(r.stdout)
        self.assertEqual(plan["pages_per_request"], 32)  # ceil(500 / 16)
        self.assertEqual(plan["requests_that_fit"], plan["pages"] // 32)
        g = run("generate", "-n", "2", "-t", "0", *flags, "Hi")
        self.assertEqual(g.returncode, 0, g.stderr)
        m = re.search(r"kv cache [\d.]+ MiB \((\d+) pages of (\d+) tokens\)", g.stderr)
        self.assertIsNotNone(m, g.stderr)
        self.assertEqual(int(m.group(1)), plan["pages"])
        self.assertEqual(int(m.group(2)), plan["page_size"])

    def test_fp8_cache_holds_four_times_the_float_tokens(self):
        flags = ["--max-model-len", "2048", "--kv-cache-memory", "64MiB", "--max-num-seqs", "64"]
        plans = {}
        for dtype in ("auto", "fp8"):
            r = run("memory", "--json", "--request-len", "500", "--kv-cache-dtype", dtype, *flags)
            self.assertEqual(r.returncode, 0, r.stderr)
            plans[dtype] = json.loads(r.stdout)
        self.assertEqual(plans["auto"]["kv_dtype"], "f32")
        self.assertEqual(plans["fp8"]["kv_dtype"], "fp8_e4m3")
        self.assertEqual(plans["auto"]["bytes_per_token"], 4 * plans["fp8"]["bytes_per_token"])
        self.assertEqual(plans["fp8"]["pages"], 4 * plans["auto"]["pages"])
        g = run("generate", "-n", "2", "-t", "0", "--kv-cache-dtype", "fp8", *flags, "Hi")
        self.assertEqual(g.returncode, 0, g.stderr)
        m = re.search(r"kv (\S+) at (\d+) bytes per token", g.stderr)
        self.assertIsNotNone(m, g.stderr)
        self.assertEqual(m.group(1), "fp8_e4m3")
        self.assertEqual(int(m.group(2)), plans["fp8"]["bytes_per_token"])
        r = run("memory", "--kv-cache-dtype", "bf16")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("kv cache dtype bf16", r.stderr)

    def test_no_request_fits(self):
        r = run("memory", "--kv-cache-memory", "1MB", "--request-len", "2000")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("one request of 2000 tokens needs 125 pages", r.stderr)

    def test_plan_shows_the_host_tier_and_the_scratch_lines(self):
        r = run("memory", "--json", "--request-len", "500", "--kv-cache-memory", "64MiB",
                 "--host-kv-cache", "256MiB")
        self.assertEqual(r.returncode, 0, r.stderr)
        plan = json.loads(r.stdout)
        self.assertEqual(plan["host_bytes"], 256 << 20)
        self.assertEqual(plan["host_pages"], (256 << 20) // plan["bytes_per_page"])
        self.assertEqual(plan["host_tokens"], plan["host_pages"] * plan["page_size"])
        self.assertEqual(plan["sampling_bytes"], 0)  # the CPU draws on the host
        self.assertEqual(plan["graph_pool_bytes"], 0)
        text = run("memory", "--request-len", "500", "--host-kv-cache", "256MiB").stdout
        self.assertIn(f"host kv tier       {plan['host_pages']} pages", text)
        self.assertIn("sampling scratch", text)
        self.assertIn("graph pools", text)

    def test_a_host_tier_larger_than_the_machine_fails_first(self):
        r = run("generate", "--host-kv-cache", "1000TiB", "Hi")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("host kv cache '1000TiB'", r.stderr)
        self.assertIn("physical memory", r.stderr)
        self.assertNotIn("output tok/s", r.stderr)


@unittest.skipUnless(HAVE_MODEL, "no default model")
class MemoryTrace(unittest.TestCase):
    def test_trace_of_a_short_run(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            r = run("generate", "-n", "6", "-t", "0", "--memory-trace", path, "Hello", "Hi there")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(path) as f:
                events = json.load(f)
        self.assertIsInstance(events, list)
        states = [e for e in events if e["name"] == "KV pages"]
        self.assertGreater(len(states), 1)
        for e in states:
            self.assertEqual(e["ph"], "C")
            self.assertEqual(set(e["args"]), {"free", "used", "cached"})
        self.assertTrue(any(s["args"]["used"] > 0 for s in states))
        tracks = {e["name"] for e in events if e["name"].startswith("request ")}
        self.assertEqual(len(tracks), 2)

    def test_bench_prints_page_peaks(self):
        r = run("bench", "--num-requests", "2", "--max-input", "100", "--max-output", "100")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"kv pages: peak used (\d+) of (\d+) .* allocated (\d+), freed (\d+)",
                      r.stdout + r.stderr)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        used, total, allocated, freed = map(int, m.groups())
        self.assertTrue(0 < used <= total)
        self.assertGreaterEqual(allocated, used)

    def test_bench_with_the_host_tier_reloads_pages(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            r = run("bench", "--workload", "multi-turn", "--groups", "4", "--prompts-per-group",
                    "2", "--system-len", "32", "--question-len", "16", "--output-len", "4",
                    "--kv-cache-memory", "8MB", "--max-num-seqs", "2", "--host-kv-cache", "64MB",
                    "--memory-trace", path, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(path) as f:
                events = json.load(f)
        m = re.search(r"host kv pages: peak used (\d+) of (\d+) .*offloaded (\d+), reloaded (\d+)",
                      r.stdout + r.stderr)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        used, total, offloaded, reloaded = map(int, m.groups())
        self.assertTrue(0 < used <= total)
        self.assertGreater(offloaded, 0)
        self.assertGreater(reloaded, 0)
        host = [e for e in events if e["name"] == "host KV pages"]
        self.assertTrue(host and all(set(e["args"]) == {"free", "used"} for e in host))
        moves = [e["args"] for e in events if e["name"] == "page transitions"]
        self.assertEqual(sum(a["restored"] for a in moves), reloaded)

    def test_unwritable_path_fails_first(self):
        r = run("generate", "--memory-trace", "/nonexistent-nc-dir/t.json", "Hi")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent-nc-dir/t.json", r.stderr)
        self.assertNotIn("output tok/s", r.stderr)


if __name__ == "__main__":
    unittest.main()
