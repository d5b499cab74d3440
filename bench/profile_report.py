#!/usr/bin/env python3
"""Groups Nsight Compute's per-kernel times (tools/gpu_profile_decode.sh: `ncu --csv --metrics
gpu__time_duration.sum`) by what the kernel does, per decode step (28 attention launches = one
step of Qwen3-0.6B).

usage: profile_report.py NCU.csv"""
import csv
import re
import sys

GROUPS = [
    ("attention (decode)", r"BatchDecode|Decode"),
    ("attention (prefill kernel)", r"BatchPrefill|Prefill"),
    ("KV append", r"AppendPagedKV|append"),
    ("attention merge", r"Merge"),
    ("GEMM (cuBLASLt)", r"gemm|nvjet|xmma|cutlass|sm90"),
    ("rmsnorm", r"[Rr]ms[Nn]orm|rmsnorm"),
    ("qkv split + norm + rope", r"qkv|rope"),
    ("silu and mul", r"silu|act_and_mul"),
    ("embedding / gather", r"gather|embedding"),
    ("sampling", r"sample|Softmax|TopK|TopP"),
    ("scatter ids", r"scatter"),
]


def main():
    rows = [l for l in open(sys.argv[1], errors="replace") if l.startswith('"')]
    reader = csv.DictReader(rows)
    times = {}
    names = {}
    decode_launches = 0
    n = 0
    for r in reader:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = r["Kernel Name"]
        value = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "ns")
        us = value / 1e3 if unit in ("ns", "nsecond") else value if unit in ("us", "usecond") else value * 1e3
        group = next((g for g, pat in GROUPS if re.search(pat, name)), "other")
        times[group] = times.get(group, 0.0) + us
        names.setdefault(group, set()).add(name[:90])
        decode_launches += group == "attention (decode)"
        n += 1
    total = sum(times.values())
    steps = decode_launches / 28 if decode_launches else 1
    print(f"{n} kernels, {total / 1e3:.3f} ms in all, {steps:.2f} decode steps (28 attention launches each)\n")
    print("| kernels | ms per step | share |")
    print("|---|---|---|")
    for g, t in sorted(times.items(), key=lambda x: -x[1]):
        print(f"| {g} | {t / 1e3 / steps:.3f} | {t / total:.1%} |")
    print()
    for g, ns in names.items():
        print(f"- {g}: " + "; ".join(sorted(ns)[:4]))


if __name__ == "__main__":
    main()
