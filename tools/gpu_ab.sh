#!/usr/bin/env bash
# Two builds of the engine side by side in one call of the GPU tool: the GPU tests of the new
# bundle, then the workloads of tools/gpu_round.sh (nano-vLLM's, the fixed 512/512 batches, the
# shared-prefix workload with cascade + prefix cache) run by the old and the new bundle in turn
# (old, new; then new, old), so that a change that should not move speed can be checked against
# run-to-run noise on the same machine. Both bundles come from `tools/gpu_check.sh pack`.
#
#   tools/gpu_ab.sh OLD_BUNDLE NEW_BUNDLE
#
# Environment: NC_AB_TESTS (1: run the new bundle's GPU tests first; 0: skip), NC_AB_PASSES (2),
# NC_GTEST_FILTER (all but SmolLM2's). Output under $OUT (or ./gpu_out), few files because the
# GPU tool brings back at most eight: ab.log, the tests' log, runs.tar.xz (one JSON per run,
# NAME_{old,new}_PASS.json) and ab.md (a table: output tok/s and decode-step wall and device ms
# per workload, old against new), both rewritten after each pass so a cut-off call keeps them.
set -uo pipefail
old=$(realpath "${1:?usage: tools/gpu_ab.sh OLD_BUNDLE NEW_BUNDLE}")
new=$(realpath "${2:?usage: tools/gpu_ab.sh OLD_BUNDLE NEW_BUNDLE}")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
for side in old new; do
  rm -rf "/tmp/nc_$side" && mkdir -p "/tmp/nc_$side"
  src=$old; [ "$side" = new ] && src=$new
  tar -C "/tmp/nc_$side" -xJf "$src" || exit 1
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
} | tee "$out/ab.log"

if [ "${NC_AB_TESTS:-1}" = 1 ]; then
  (
    export LD_LIBRARY_PATH="/tmp/nc_new/nc/lib:${LD_LIBRARY_PATH:-}"
    export NC_FIXTURES_DIR_OVERRIDE=/tmp/nc_new/nc/fixtures
    timeout 240 /tmp/nc_new/nc/bin/nc_gpu_tests --gtest_filter="${NC_GTEST_FILTER:--*SmolLM2*}" \
      > "$out/gpu_tests.log" 2>&1
  )
  grep -E "^\[  (FAILED|PASSED) |^\[==|^\[  FAILED" "$out/gpu_tests.log" | tee -a "$out/ab.log"
fi

FLAGS=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384
       --max-num-seqs 512)
FIXED=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0
       --prompts-per-group 1 --question-len 512 --output-len 512)
SP=(--workload shared-prefix --system-len 2048 --question-len 128 --output-len 256 --groups 64
    --prompts-per-group 16)
# bench SIDE NAME ARGS...: one run of SIDE's nanocascade bench, its JSON as NAME_SIDE_PASS.json.
bench() {
  local side=$1 name=$2
  shift 2
  local nc=/tmp/nc_$side/nc
  echo "== $name ($side, pass $pass)"
  LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}" timeout 150 "$nc/bin/nanocascade" bench \
    --model "$nc/configs/qwen3-0.6b.json" "${FLAGS[@]}" "$@" \
    --json "$runs/${name}_${side}_${pass}.json" 2>&1 | grep -E "throughput|decode-only"
}
# workloads SIDE: every workload once on SIDE.
workloads() {
  bench "$1" nanovllm
  for b in 1 64 256; do bench "$1" "fixed$b" "${FIXED[@]}" --groups "$b"; done
  bench "$1" sp_cascade "${SP[@]}"
}
runs=$(mktemp -d)
for pass in $(seq 1 "${NC_AB_PASSES:-2}"); do
  if [ $((pass % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for side in $order; do workloads "$side"; done
  tar -C "$runs" -cJf "$out/runs.tar.xz" .
  python3 "$repo/bench/ab_report.py" "$runs" > "$out/ab.md"
done 2>&1 | tee -a "$out/ab.log"
cat "$out/ab.md"
