#!/usr/bin/env bash
# The cascade end-to-end benchmark on a GPU machine (docs/benchmarks.md "Cascade end to end"),
# from a bundle made by `tools/gpu_check.sh pack`: `nanocascade bench` on Qwen3-0.6B's shape with
# random weights, the shared-prefix workload three ways (cascade + prefix cache, prefix cache
# only, both off) and the multi-turn workload two ways (cascade + cache, both off).
#
#   tools/gpu_cascade_e2e.sh BUNDLE
#
# Environment: NC_SP ("--groups 64 --prompts-per-group 16"), NC_MT ("--groups 8
# --prompts-per-group 4"), NC_TIMEOUT (per run, 150 s). Output under $OUT (or ./gpu_out):
# cascade_e2e.log and one JSON per run.
set -uo pipefail
bundle=${1:?usage: tools/gpu_cascade_e2e.sh BUNDLE}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
nc=/tmp/nc
rm -rf "$nc" && tar -C /tmp -xJf "$bundle" || exit 1
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
cd "$nc"
FLAGS=(--backend cuda --load-format dummy --model configs/qwen3-0.6b.json --max-model-len 4096
       --max-num-batched-tokens 16384 --max-num-seqs 512)
SP=(--workload shared-prefix --system-len 2048 --question-len 128 --output-len 256 ${NC_SP:---groups 64 --prompts-per-group 16})
MT=(--workload multi-turn --system-len 2048 --question-len 128 --output-len 256 ${NC_MT:---groups 8 --prompts-per-group 4})
t=${NC_TIMEOUT:-150}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "== shared-prefix, cascade + prefix cache"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${SP[@]}" --json "$out/sp_cascade.json"
  echo "== shared-prefix, prefix cache only (--no-cascade)"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${SP[@]}" --no-cascade --json "$out/sp_cache.json"
  echo "== shared-prefix, both off (--no-cascade --no-prefix-cache)"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${SP[@]}" --no-cascade --no-prefix-cache \
    --json "$out/sp_off.json"
  echo "== multi-turn, cascade + prefix cache"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${MT[@]}" --json "$out/mt_cascade.json"
  echo "== multi-turn, both off"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${MT[@]}" --no-cascade --no-prefix-cache \
    --json "$out/mt_off.json"
} 2>&1 | tee "$out/cascade_e2e.log"
