#!/usr/bin/env python3
"""The table of tools/gpu_ab.sh: per workload, output tok/s and the decode step's wall and device
time of the old and the new build (mean over passes), and new / old.

    python3 bench/ab_report.py OUT_DIR
"""
import glob
import json
import os
import re
import sys
from collections import defaultdict


def per_run(d):
    dec = d["decode"]
    steps = max(dec["steps"], 1)
    return {
        "tok_s": d["output_tokens"] / d["time_s"],
        "step_wall_ms": 1e3 * dec["wall_s"] / steps,
        "step_dev_ms": 1e3 * dec["device_s"] / steps,
    }


def main(out_dir):
    runs = defaultdict(lambda: defaultdict(list))  # workload -> side -> [metrics]
    for path in sorted(glob.glob(os.path.join(out_dir, "*_*_*.json"))):
        m = re.match(r"(.+)_(old|new)_(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs[m.group(1)][m.group(2)].append(per_run(json.load(f)))
    print("| workload | metric | old | new | new/old | runs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for wl in sorted(runs):
        for key in ("tok_s", "step_wall_ms", "step_dev_ms"):
            vals = {s: [r[key] for r in runs[wl][s]] for s in ("old", "new")}
            if not vals["old"] or not vals["new"]:
                continue
            o = sum(vals["old"]) / len(vals["old"])
            n = sum(vals["new"]) / len(vals["new"])
            spread = " / ".join(f"{v:.2f}" for v in vals["old"] + vals["new"])
            print(f"| {wl} | {key} | {o:.2f} | {n:.2f} | {n / o:.3f} | {spread} |")


if __name__ == "__main__":
    main(sys.argv[1])
