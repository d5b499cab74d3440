#!/usr/bin/env python3
"""Checks of bench/profile_report.py (issue #16 item 5: the profile report for any model) on
profiles Nsight Compute wrote on the GPU machine, kept under bench/gpu/results/:

- DeepSeek-V2-Lite's decode at batch 256 (MLA attention, MoE layers, 27 layers): the steps are
  counted from the MLA attention launches, the MoE kernels have groups of their own, FlashInfer's
  fused add + RMSNorm counts as rmsnorm (not "other");
- Qwen3-0.6B's decode (FlashInfer's decode kernel, 28 layers): steps from the attention launches,
  and from the token draws when no layer count is given;
- a profile without attention launches and a layer count: the totals are for the whole window
  (one "step", said so) instead of a division by zero.

Run from the repository root: python3 tests/tools/test_profile_report.py
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(ROOT, "bench", "profile_report.py")
RESULTS = os.path.join(ROOT, "bench", "gpu", "results")
DSV2_LITE = os.path.join(RESULTS, "gpu_2026-12-06_s13", "call6", "prof_decode", "ncu.csv.gz")
QWEN3 = os.path.join(RESULTS, "async_h100_2026-11-27", "profile", "ncu.csv")


def report(*args):
    r = subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"profile_report.py {args} failed: {r.stderr}")
    return r.stdout


def steps_of(out):
    m = re.search(r"([\d.]+) decode steps \(([\d.]+) layers: ([^)]*)\)", out)
    assert m, out[:400]
    return float(m.group(1)), float(m.group(2)), m.group(3)


def rows_of(out):
    """{group: (ms per step, launches per step, share)} from the table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[3].endswith("%"):
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3][:-1]))
    return rows


class ProfileReport(unittest.TestCase):
    def test_mla_and_moe_model(self):
        out = report(DSV2_LITE, "--layers", "27")
        steps, layers, how = steps_of(out)
        self.assertEqual(how, "given")
        self.assertAlmostEqual(steps, 2.11, delta=0.05)  # 57 MLA launches / 27 layers
        rows = rows_of(out)
        self.assertAlmostEqual(rows["attention (MLA)"][1], 27.0, delta=0.01)
        for group in ("MoE grouped GEMM", "MoE routing", "MoE permutation + combine"):
            self.assertIn(group, rows)
        # Two grouped GEMMs (gate_up, down) in each of the 26 MoE layers.
        self.assertAlmostEqual(rows["MoE grouped GEMM"][1], 52.0, delta=1.0)
        self.assertGreater(rows["MoE grouped GEMM"][2], 50.0)
        self.assertIn("rmsnorm", rows)
        other = [l for l in out.splitlines() if l.startswith("- other:")]
        self.assertFalse(other and "RMSNorm" in other[0], other)

    def test_dense_model_with_and_without_the_layer_count(self):
        steps, layers, _ = steps_of(report(QWEN3, "--layers", "28"))
        free_steps, free_layers, how = steps_of(report(QWEN3))
        self.assertIn("token draws", how)
        self.assertGreater(steps, 0.5)
        # The draws and the attention launches count the same steps, give or take the window's
        # partial steps at either end.
        self.assertLess(abs(free_steps - steps), 1.01)
        self.assertAlmostEqual(free_layers * free_steps, layers * steps, delta=0.2)  # printed to 2 places

    def test_no_attention_launches(self):
        header = '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"\n'
        rows = "".join(f'"{i}","void gemv_kernel<1, 0>(...)","gpu__time_duration.sum","ns","{1000 + i}"\n'
                       f'"{i}","sample_rows_finish_kernel(...)","gpu__time_duration.sum","ns","500"\n'
                       for i in range(3))
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write(header + rows)
        try:
            steps, _, how = steps_of(report(f.name, "--layers", "28"))
        finally:
            os.unlink(f.name)
        self.assertEqual(steps, 1.0)  # totals for the whole window, said so
        self.assertIn("unknown", how)


if __name__ == "__main__":
    unittest.main()
