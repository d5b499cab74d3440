#!/usr/bin/env bash
# Issue #14's GPU check of the MoE and MLA models, from a bundle made by `tools/gpu_check.sh pack`
# (it holds nanocascade, nc_gpu_tests, nc_gpu_bench, the fixtures and configs/):
#
#   1. nc_gpu_tests for MoE and MLA: the ops against the CPU, the tiny fixtures' models, and
#      decode steps through CUDA graphs against eager steps (CudaMoe.*, CudaMla.*,
#      CudaMlaGraphs.*);
#   2. `nc_gpu_bench moe`: Qwen3-30B-A3B's expert GEMMs at 1..4096 tokens a step against the copy
#      bandwidth and a bf16 GEMM peak, beside one cuBLASLt GEMM per expert; routing and
#      permutation times;
#   3. `nc_gpu_bench mla`: DeepSeek-V2-Lite's MLA decode at batch 16/64/128 x context 1k/4k
#      against the copy bandwidth, and a 4096-token shared prefix read plain vs through a
#      cascade level;
#   4. `nanocascade bench` (nano-vLLM's workload, random weights: --load-format dummy) on
#      configs/qwen3-30b-a3b.json and configs/deepseek-v2-lite.json, CUDA graphs on and off.
#
#   tools/gpu_moe_mla.sh BUNDLE
#
# Bounded: the GPU tests 240 s, each nc_gpu_bench part 150 s, each of the 4 end-to-end runs
# NC_TIMEOUT (75 s; the nano-vLLM workload cut to NC_SEQS requests of at most NC_LEN input and
# output tokens). NC_PARTS picks the parts (default "tests moe mla e2e"), e.g. two device calls
# of "tests moe mla" and "e2e" where one call may not pass 10 minutes. Qwen3-30B-A3B's random bf16 weights are 61 GB: an H200,
# or an H100 with NC_KV at most ~8GiB.
# Environment: NC_PARTS, NC_SEQS (64), NC_LEN (512), NC_TIMEOUT (75 s), NC_KV (KV budget, 16GiB). Output
# under $OUT (or ./gpu_out): moe_mla.log, gpu_tests.log, bench_moe.md, bench_mla.md,
# e2e_<model>_<graphs|eager>.json.
set -uo pipefail
bundle=${1:?usage: tools/gpu_moe_mla.sh BUNDLE}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
cd "$nc"
t=${NC_TIMEOUT:-75}
parts=" ${NC_PARTS:-tests moe mla e2e} "
want() { [[ "$parts" == *" $1 "* ]]; }
len=${NC_LEN:-512}
e2e() {
  local name=$1 config=$2
  shift 2
  echo "== bench $name: $config $*"
  timeout "$t" bin/nanocascade bench --backend cuda --load-format dummy --model "$config" \
    --max-model-len 4096 --kv-cache-memory "${NC_KV:-16GiB}" --num-requests "${NC_SEQS:-64}" \
    --max-input "$len" --max-output "$len" "$@" \
    --json "$out/e2e_$name.json" 2>&1 | tail -15
}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  if want tests; then
    echo "== nc_gpu_tests (MoE, MLA, graphs)"
    timeout 240 bin/nc_gpu_tests \
      --gtest_filter='CudaMoe.*:CudaMla.*:CudaMlaGraphs.*:CudaModelVariants.*' 2>&1 \
      | tee "$out/gpu_tests.log" | grep -E "^\[ *(OK|FAILED|PASSED) *\]|Failure|rel error|graph vs"
  fi
  if want moe; then
    echo "== nc_gpu_bench moe"
    timeout 150 bin/nc_gpu_bench moe 2>&1 | tee "$out/bench_moe.md"
  fi
  if want mla; then
    echo "== nc_gpu_bench mla"
    timeout 150 bin/nc_gpu_bench mla 2>&1 | tee "$out/bench_mla.md"
  fi
  if want e2e; then
    e2e qwen3-30b-a3b_graphs configs/qwen3-30b-a3b.json
    e2e qwen3-30b-a3b_eager configs/qwen3-30b-a3b.json --no-cuda-graphs
    e2e deepseek-v2-lite_graphs configs/deepseek-v2-lite.json
    e2e deepseek-v2-lite_eager configs/deepseek-v2-lite.json --no-cuda-graphs
  fi
  echo "== summary"
  python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in sorted(f[4:-5] for f in os.listdir(out) if f.startswith("e2e_") and f.endswith(".json")):
    j = json.load(open(os.path.join(out, f"e2e_{name}.json")))
    steps = max(j.get("steps", 1), 1)
    print(f"{name}: output {j['output_tokens'] / j['time_s']:.0f} tok/s, "
          f"{j['time_s'] / steps * 1e3:.2f} ms a step, mean TTFT {j['mean_ttft_s'] * 1e3:.0f} ms")
PY
} 2>&1 | tee "$out/moe_mla.log"
