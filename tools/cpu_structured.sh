#!/usr/bin/env bash
# Issue #18's CPU throughput check of structured output: the README's default model (SmolLM2-135M
# Q4_1, embedded) on the CPU backend, a batch of 32 requests (100 prompt tokens at most, 100 output
# tokens at most), without and with a JSON schema on every request, alternating plain / schema
# ROUNDS times in one run so that a change in the machine's load hits both alike. The schema
# (bench/schemas/nanovllm_records.json: a list of at least 64 typed records) never completes
# within 100 tokens, so every request runs to its drawn length in both runs.
#
#   tools/cpu_structured.sh [BUILD_DIR]     (default build; ROUNDS, default 3; OUT, default
#                                            bench/cpu/results/structured_<date>)
#
# Writes plain_<i>.json / schema_<i>.json (bench's JSON), structured.log and summary.md (output
# tok/s of each run, the mean of each kind and their ratio).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$repo/build}")/nanocascade
out=${OUT:-$repo/bench/cpu/results/structured_$(date -u +%Y-%m-%d)}
mkdir -p "$out"
schema=$repo/bench/schemas/nanovllm_records.json
flags=(--num-requests 32 --max-input 100 --max-output 100 --max-num-seqs 32)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$repo" rev-parse --short HEAD)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in $(seq 1 "${ROUNDS:-3}"); do
    echo "== plain $i (load $(cut -d' ' -f1 /proc/loadavg))"
    "$bin" bench "${flags[@]}" --json "$out/plain_$i.json"
    echo "== schema $i (load $(cut -d' ' -f1 /proc/loadavg))"
    "$bin" bench "${flags[@]}" --json-schema "$schema" --json "$out/schema_$i.json"
  done
} > "$out/structured.log" 2>&1
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows, rate = [], {"plain": [], "schema": []}
for kind in rate:
    for f in sorted(out.glob(f"{kind}_*.json")):
        r = json.loads(f.read_text())
        tps = r["output_tokens"] / r["time_s"]
        rate[kind].append(tps)
        rows.append(f"| {f.stem} | {r['output_tokens']} | {r['time_s']:.2f} | {tps:.1f} |")
mean = {k: sum(v) / len(v) for k, v in rate.items()}
text = "\n".join(["| run | output tokens | seconds | output tok/s |", "|---|---:|---:|---:|", *rows, "",
                  f"mean output tok/s: plain {mean['plain']:.1f}, schema {mean['schema']:.1f}; "
                  f"schema / plain = {mean['schema'] / mean['plain']:.3f}"])
(out / "summary.md").write_text(text + "\n")
print(text)
PY
