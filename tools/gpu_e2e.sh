#!/usr/bin/env bash
# The engine end to end on a GPU machine (docs/gpu.md "End to end"), from a bundle made by
# `tools/gpu_check.sh pack` (binaries, host libraries, fixtures, configs, bench/*.py). Two phases,
# so that the SmolLM2 file (larger than one call of the workplace's GPU tool may carry) can
# arrive in two halves on the same machine:
#
#   tools/gpu_e2e.sh a BUNDLE   unpack to /tmp/nc; the card's ceilings (bench/gpu_ceilings.py);
#                               the GPU tests except SmolLM2's; `nanocascade bench` on
#                               Qwen3-0.6B's shape with random weights, CUDA graphs on and off;
#                               transformers' generate on the same shape (bench/hf_generate.py);
#                               the roofline report (bench/e2e_report.py)
#   tools/gpu_e2e.sh c BUNDLE   a shorter phase a: the CudaEngine tests, the bench with graphs
#                               (asynchronous scheduling on, then off) and transformers' generate
#                               (batches of 128) in one call
#   tools/gpu_e2e.sh b GGUF     with the bundle of phase a still in /tmp/nc and SmolLM2 at GGUF:
#                               the SmolLM2 GPU tests, `nanocascade generate --backend cuda`,
#                               and the bench on Llama-3-8B's shape with random weights
#
# Output under $OUT (or ./gpu_out): a.log/b.log and the JSON results.
set -uo pipefail
phase=${1:-}
arg=${2:-}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
nc=/tmp/nc
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
export NC_FIXTURES_DIR_OVERRIDE="$nc/fixtures"
export PYTHONUNBUFFERED=1
BENCH_FLAGS=(--backend cuda --load-format dummy --max-model-len 4096
             --max-num-batched-tokens 16384 --max-num-seqs 512)

case "$phase" in
  a)
    rm -rf "$nc" && tar -C /tmp -xJf "$arg" || exit 1
    cd "$nc"
    {
      echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
      python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
      echo "== ceilings"
      python3 bench/gpu_ceilings.py "$out/ceilings.json"
      echo "== GPU tests (all but SmolLM2)"
      timeout 300 bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' 2>&1 |
        grep -E "^\[ *(OK|FAILED|PASSED) *\]|Failure|Expected|Which|error|graph|greedy|sampl|^  " | tail -80
      echo "== nanocascade bench, Qwen3-0.6B shape, random weights, CUDA graphs on"
      timeout 240 bin/nanocascade bench "${BENCH_FLAGS[@]}" --model configs/qwen3-0.6b.json \
        --json "$out/bench_graphs.json" 2>&1
      echo "== same, CUDA graphs off"
      timeout 240 bin/nanocascade bench "${BENCH_FLAGS[@]}" --model configs/qwen3-0.6b.json \
        --no-cuda-graphs --json "$out/bench_eager.json" 2>&1
      echo "== transformers generate, same shape"
      timeout 280 python3 bench/hf_generate.py --config configs/qwen3-0.6b.json --max-time 200 \
        --json "$out/hf.json" 2>&1 | grep -v Warning
      echo "== roofline"
      python3 bench/e2e_report.py configs/qwen3-0.6b.json "$out/ceilings.json" \
        "$out/bench_graphs.json" "$out/bench_eager.json"
    } 2>&1 | tee "$out/a.log"
    ;;
  c)
    # A shorter rerun of phase a on a fresh bundle: the CudaEngine tests, the bench with graphs,
    # and transformers in the same call.
    rm -rf "$nc" && tar -C /tmp -xJf "$arg" || exit 1
    cd "$nc"
    {
      echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 bench/gpu_ceilings.py "$out/ceilings.json"
      timeout 120 bin/nc_gpu_tests --gtest_filter='CudaEngine.*:-*SmolLM2*' 2>&1 |
        grep -E "^\[ *(OK|FAILED|PASSED) *\]|Failure|Expected|Which|graph|greedy|sampl|^  " | tail -40
      timeout 120 bin/nanocascade bench "${BENCH_FLAGS[@]}" --model configs/qwen3-0.6b.json \
        --json "$out/bench_graphs.json" 2>&1
      echo "== the same without asynchronous scheduling"
      timeout 120 bin/nanocascade bench "${BENCH_FLAGS[@]}" --model configs/qwen3-0.6b.json \
        --no-async-scheduling --json "$out/bench_graphs_sync.json" 2>&1
      PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 300 python3 bench/hf_generate.py \
        --config configs/qwen3-0.6b.json --batch-size 128 --max-batches 1 --max-time 100 --json "$out/hf.json" \
        2>&1 | grep -v Warning | tail -20
      python3 bench/e2e_report.py configs/qwen3-0.6b.json "$out/ceilings.json" \
        "$out/bench_graphs.json" "$out/bench_graphs_sync.json"
    } 2>&1 | tee "$out/c.log"
    ;;
  b)
    cd "$nc" || exit 1
    export NC_MODEL_PATH="$arg"
    {
      echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
      echo "== SmolLM2 GPU tests"
      timeout 200 bin/nc_gpu_tests --gtest_filter='*SmolLM2*' 2>&1 | tail -40
      echo "== nanocascade generate --backend cuda (SmolLM2, chat, greedy)"
      timeout 60 bin/nanocascade generate --backend cuda --model "$arg" --chat -t 0 -n 120 \
        "Write a short poem about the sea." 2>&1
      timeout 60 bin/nanocascade generate --backend cuda --model "$arg" --chat -t 0 -n 60 \
        --no-cuda-graphs "What is the capital of France? Answer in one sentence." 2>&1
      echo "== nanocascade bench, Llama-3-8B shape, random weights, CUDA graphs on"
      timeout 240 bin/nanocascade bench "${BENCH_FLAGS[@]}" --model configs/llama-3-8b.json \
        --json "$out/bench_8b.json" 2>&1
      [ -f "$out/ceilings.json" ] || python3 bench/gpu_ceilings.py "$out/ceilings.json"
      python3 bench/e2e_report.py configs/llama-3-8b.json "$out/ceilings.json" "$out/bench_8b.json"
    } 2>&1 | tee "$out/b.log"
    ;;
  *)
    echo "usage: tools/gpu_e2e.sh a BUNDLE | c BUNDLE | b GGUF" >&2
    exit 2
    ;;
esac
