#!/usr/bin/env python3
"""Groups Nsight Compute's per-kernel times (tools/gpu_profile_decode.sh: `ncu --csv --metrics
gpu__time_duration.sum`) by what the kernel does, per decode step.

The number of decode steps in the profile comes from, in order: --layers N or --config
CONFIG.json (num_hidden_layers; one attention launch per layer and step), else the profile itself
(one token draw, sample_rows, per step; the layer count is then attention launches / steps).

NCU.csv may be gzipped (NCU.csv.gz), as the profiles under bench/gpu/results/ are kept.

usage: profile_report.py NCU.csv [--layers N | --config CONFIG.json]"""
import argparse
import csv
import gzip
import json
import re

# First match wins. MoE kernels (moe.cu) are named before the generic GEMM/gather/scatter groups
# whose patterns would otherwise take them.
GROUPS = [
    ("attention (MLA)", r"BatchMLA"),
    ("attention (decode)", r"BatchDecode|Decode"),
    ("attention (prefill kernel)", r"BatchPrefill|Prefill"),
    ("KV append", r"AppendPagedKV|append"),
    ("attention merge", r"Merge"),
    ("MoE grouped GEMM", r"GemmGrouped|grouped_gemm_kernel"),
    ("MoE routing", r"\broute_kernel"),
    ("MoE permutation + combine",
     r"\b(count_kernel|plan_kernel|scatter_kernel|gather_kernel|combine_kernel|grouped_args_kernel)\("),
    ("GEMM (cuBLASLt / gemv)", r"gemm|gemv|nvjet|xmma|cutlass|sm90|splitKreduce"),
    ("rmsnorm", r"(?i)rms_?norm"),
    ("qkv split + norm + rope", r"qkv|rope"),
    ("silu and mul", r"silu|act_and_mul"),
    ("embedding / gather", r"gather|embedding"),
    ("sampling", r"sample|Softmax|TopK|TopP"),
    ("scatter ids", r"scatter"),
]
ATTENTION = ("attention (MLA)", "attention (decode)", "attention (prefill kernel)")
# One per decode step: the draw (sample_rows, or its two-pass form's finishing kernel).
STEP_MARK = r"sample_rows_kernel|sample_rows_finish"


def read_kernels(path):
    """(kernel name, microseconds) per launch, in profile order."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        rows = [l for l in f if l.startswith('"')]
    out = []
    for r in csv.DictReader(rows):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "ns")
        scale = 1e-3 if unit in ("ns", "nsecond") else 1.0 if unit in ("us", "usecond") else 1e3
        out.append((r["Kernel Name"], value * scale))
    return out


def group_of(name):
    return next((g for g, pat in GROUPS if re.search(pat, name)), "other")


def count_steps(kernels, layers):
    """(steps, layers, how) for the profile."""
    attention = sum(group_of(n) in ATTENTION for n, _ in kernels)
    if layers and attention:
        return attention / layers, layers, "given"
    draws = sum(bool(re.search(STEP_MARK, n)) for n, _ in kernels)
    if draws and attention:
        return draws, attention / draws, "from the profile (token draws)"
    return 1.0, 0, "unknown (no draws or attention launches): totals are for the whole profile"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--config", help="model config.json (num_hidden_layers)")
    args = ap.parse_args()
    layers = args.layers
    if not layers and args.config:
        layers = int(json.load(open(args.config))["num_hidden_layers"])
    kernels = read_kernels(args.csv)
    times, names = {}, {}
    for name, us in kernels:
        g = group_of(name)
        times[g] = times.get(g, 0.0) + us
        names.setdefault(g, set()).add(name[:90])
    total = sum(times.values())
    steps, layers, how = count_steps(kernels, layers)
    print(f"{len(kernels)} kernels, {total / 1e3:.3f} ms in all, {steps:.2f} decode steps "
          f"({layers:g} layers: {how})")
    per_layer = f", {len(kernels) / steps / layers:.2f} per layer" if layers else ""
    print(f"{len(kernels) / steps:.1f} kernels per step{per_layer} (every kernel of the window, "
          f"the step's non-layer ones included)\n")
    print("| kernels | ms per step | launches per step | share |")
    print("|---|---|---|---|")
    launches = {}
    for name, _ in kernels:
        launches[group_of(name)] = launches.get(group_of(name), 0) + 1
    for g, t in sorted(times.items(), key=lambda x: -x[1]):
        print(f"| {g} | {t / 1e3 / steps:.3f} | {launches[g] / steps:.1f} | {t / max(total, 1e-9):.1%} |")
    print()
    for g, ns in names.items():
        print(f"- {g}: " + "; ".join(sorted(ns)[:4]))


if __name__ == "__main__":
    main()
