#!/usr/bin/env bash
# The cascade end-to-end benchmark on a GPU machine (docs/benchmarks.md "Cascade end to end"),
# from a bundle made by `tools/gpu_check.sh pack`: `nanocascade bench` on Qwen3-0.6B's shape with
# random weights, the shared-prefix and the multi-turn workloads four ways each: cascade (cost
# model) + prefix cache, every shared level forced (--cascade-force) + prefix cache, prefix cache
# only, both off.
#
#   tools/gpu_cascade_e2e.sh BUNDLE
#
# Environment: NC_SP ("--groups 64 --prompts-per-group 16"), NC_MT ("--groups 8
# --prompts-per-group 4"), NC_TIMEOUT (per run, 150 s), NC_E2E_MODES (all | short: no forced runs). Output under $OUT (or ./gpu_out):
# cascade_e2e.log and one JSON per run.
set -uo pipefail
bundle=${1:?usage: tools/gpu_cascade_e2e.sh BUNDLE}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
cd "$nc"
FLAGS=(--backend cuda --load-format dummy --model configs/qwen3-0.6b.json --max-model-len 4096
       --max-num-batched-tokens 16384 --max-num-seqs 512)
SP=(--workload shared-prefix --system-len 2048 --question-len 128 --output-len 256 ${NC_SP:---groups 64 --prompts-per-group 16})
MT=(--workload multi-turn --system-len 2048 --question-len 128 --output-len 256 ${NC_MT:---groups 8 --prompts-per-group 4})
t=${NC_TIMEOUT:-150}
# run NAME WORKLOAD-ARRAY-NAME FLAGS...: one bench run, its JSON as $out/NAME.json.
run() {
  local name=$1 wl=$2
  shift 2
  local -n w=$wl
  echo "== $name: $*"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${w[@]}" "$@" --json "$out/$name.json"
}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  run sp_cascade SP
  [ "${NC_E2E_MODES:-all}" = short ] || run sp_force SP --cascade-force
  run sp_cache SP --no-cascade
  run sp_off SP --no-cascade --no-prefix-cache
  run mt_cascade MT
  [ "${NC_E2E_MODES:-all}" = short ] || run mt_force MT --cascade-force
  run mt_cache MT --no-cascade
  run mt_off MT --no-cascade --no-prefix-cache
} 2>&1 | tee "$out/cascade_e2e.log"
