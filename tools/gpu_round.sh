#!/usr/bin/env bash
# One call of the GPU tool that checks and times the engine as it is (docs/gpu.md): from a bundle
# made here by `tools/gpu_check.sh pack`, on the GPU machine,
#   1. the GPU tests (NC_GTEST_FILTER, default all but SmolLM2's: the model is not carried) and
#      the microbenchmarks named by NC_BENCH (default none; see bench/gpu/gpu_bench.cc),
#   2. the nano-vLLM workload (Qwen3-0.6B shape, random weights, CUDA graphs; with and without
#      asynchronous scheduling) and the fixed
#      512-in / 512-out batches that llama.cpp's llama-batched-bench runs (tools/gpu_peer_llamacpp.sh),
#   3. the cascade end-to-end workloads (tools/gpu_cascade_e2e.sh; NC_E2E_MODES=short runs
#      cascade + cache, cache only and both off),
# and leaves everything in $OUT/round.tar.xz plus the main logs.
#
#   tools/gpu_round.sh BUNDLE
set -uo pipefail
bundle=$(realpath "${1:?usage: tools/gpu_round.sh BUNDLE}")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
mkdir -p "$work/tests" "$work/e2e"
OUT=$work/tests NC_BENCH="${NC_BENCH:-none}" NC_GTEST_FILTER="${NC_GTEST_FILTER:--*SmolLM2*}" timeout 300 \
  bash "$repo/tools/gpu_check.sh" run "$bundle" > "$work/tests_console.log" 2>&1
grep -E "^\[  (FAILED|PASSED) |^\[==" "$work/tests/gpu_tests.log" | tail -20
[ -f "$work/tests/gpu_bench.md" ] && cat "$work/tests/gpu_bench.md"
nc=/tmp/nc
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
rm -rf "$nc" && tar -C /tmp -xJf "$bundle"
FLAGS=(--backend cuda --load-format dummy --model "$nc/configs/qwen3-0.6b.json" --max-model-len 4096
       --max-num-batched-tokens 16384 --max-num-seqs 512)
{
  echo "== nano-vLLM workload (256 requests, U[100,1024] in/out), CUDA graphs"
  timeout 120 "$nc/bin/nanocascade" bench "${FLAGS[@]}" --json "$work/nanovllm.json"
  echo "== nano-vLLM workload, synchronous scheduling (--no-async-scheduling), same run"
  timeout 120 "$nc/bin/nanocascade" bench "${FLAGS[@]}" --no-async-scheduling \
    --json "$work/nanovllm_sync.json"
  for b in 1 64 256; do
    echo "== fixed: $b requests x 512 prompt ids, 512 output tokens (llama-batched-bench's points)"
    timeout 120 "$nc/bin/nanocascade" bench "${FLAGS[@]}" --no-prefix-cache --no-cascade \
      --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 \
      --output-len 512 --groups "$b" --json "$work/fixed_$b.json"
  done
} > "$work/bench.log" 2>&1
grep -E "^==|throughput|steps|device:" "$work/bench.log"
OUT=$work/e2e bash "$repo/tools/gpu_cascade_e2e.sh" "$bundle" > "$work/e2e_console.log" 2>&1
grep -E "^==|throughput|cache:|decode-only|mean time" "$work/e2e/cascade_e2e.log"
tar -C "$work" -cJf "$out/round.tar.xz" .
cp "$work/tests/gpu_tests.log" "$work/bench.log" "$work/e2e/cascade_e2e.log" "$out/"
