#!/usr/bin/env bash
# Issue #17's GPU checks in one device call, bf16 and FP8 side by side, from a bundle made by
# `tools/gpu_check.sh pack` (pre-build the fp8 JIT keys into it: its default list has them). Each
# part writes raw files under $OUT (or ./gpu_out) and the console goes to fp8.log:
#
#   ceilings  bench/gpu_ceilings.py: copy bandwidth and bf16 GEMM rate of this GPU -> ceilings.json
#   tests     the FP8, fused-kernel and GEMM-choice GPU tests               -> gpu_tests.txt
#   kernels   `nc_gpu_bench fp8kv` (paged decode over bf16 and FP8 pages, groups 2/4/8, against
#             the copy rate), once with our FP8 decode kernel and once with FlashInfer's
#             (NC_FP8_DECODE_IMPL=fi); `nc_gpu_bench fp8` (FP8 GEMM TFLOP/s against the card's FP8
#             rate, decode GEMMs against the copy rate)       -> fp8kv_{ours,fi}.md, fp8_gemm.md
#   nano      nano-vLLM's workload on the Qwen3-0.6B shape: bf16, FP8 KV, FP8 KV on FlashInfer's
#             kernels, FP8 weights + KV                                   -> nano_*.{log,json}
#   8b        the Llama-3-8B shape, 512 + 512 tokens a request, batch 64 and 256: bf16, FP8 KV,
#             FP8 weights + KV, and FP8 weights + KV with the FP8 fusions off (NC_FP8_FUSED_MLP=0
#             NC_FP8_FUSED_NORM=0) (FP8 weights quantise at load: ~40 s more a run)
#                                                                           -> l8b_*.{log,json}
#
#   tools/gpu_fp8.sh BUNDLE
#
# About 7 minutes with the unpacking (8b is most of it). NC_PARTS picks parts (default
# "ceilings tests kernels nano 8b"), NC_8B_BATCHES the 8b part's batches (default "64 256").
set -uo pipefail
bundle=${1:?usage: tools/gpu_fp8.sh BUNDLE}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
parts=" ${NC_PARTS:-ceilings tests kernels nano 8b} "
want() { [[ "$parts" == *" $1 "* ]]; }

# bench NAME [env...] -- [flags...]: one `nanocascade bench` run, its console and JSON kept.
bench() {
  local name=$1
  shift
  local env=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do env+=("$1"); shift; done
  shift
  echo "== $name: ${env[*]} $*"
  env "${env[@]}" timeout 110 "$nc/bin/nanocascade" bench --backend cuda --load-format dummy "$@" \
    --json "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"
  grep -h "throughput\|decode-only\|with prefill\|memory:" "$out/$name.log"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  if want ceilings; then
    timeout 100 python3 "$repo/bench/gpu_ceilings.py" > "$out/ceilings.json" 2>&1
    cat "$out/ceilings.json"
  fi
  if want tests; then  # the FP8 GPU tests, the fused MLP and norm's among them
    NC_FIXTURES_DIR_OVERRIDE="$repo/tests/fixtures" timeout 200 "$nc/bin/nc_gpu_tests" \
      --gtest_filter='*Fp8*:CudaFused*:CudaGemmChoice*' > "$out/gpu_tests.txt" 2>&1
    echo "gpu tests exit $?"; tail -3 "$out/gpu_tests.txt"
  fi
  if want kernels; then
    (cd "$out" && timeout 120 "$nc/bin/nc_gpu_bench" fp8kv > fp8kv_ours.md 2>&1)
    (cd "$out" && NC_FP8_DECODE_IMPL=fi timeout 120 "$nc/bin/nc_gpu_bench" fp8kv > fp8kv_fi.md 2>&1)
    (cd "$out" && timeout 150 "$nc/bin/nc_gpu_bench" fp8 > fp8_gemm.md 2>&1)
    cat "$out/fp8kv_ours.md" "$out/fp8kv_fi.md" "$out/fp8_gemm.md"
  fi
  if want nano; then
    N=(--model "$nc/configs/qwen3-0.6b.json" --workload nano-vllm)
    bench nano_bf16 -- "${N[@]}"
    bench nano_fp8kv -- "${N[@]}" --kv-cache-dtype fp8
    bench nano_fp8kv_fi NC_FP8_DECODE_IMPL=fi -- "${N[@]}" --kv-cache-dtype fp8
    bench nano_fp8w_fp8kv -- "${N[@]}" --kv-cache-dtype fp8 --quantization fp8
  fi
  if want 8b; then
    for b in ${NC_8B_BATCHES:-64 256}; do
      L=(--model "$nc/configs/llama-3-8b.json" --max-model-len 4096 --max-num-batched-tokens 16384
         --max-num-seqs 512 --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0
         --prompts-per-group 1 --question-len 512 --output-len 512 --groups "$b")
      bench "l8b_b${b}_bf16" -- "${L[@]}"
      bench "l8b_b${b}_fp8kv" -- "${L[@]}" --kv-cache-dtype fp8
      bench "l8b_b${b}_fp8w_fp8kv" -- "${L[@]}" --kv-cache-dtype fp8 --quantization fp8
      # The FP8 fusions off (fp8_gemm.h: silu_mlp and the norm riding the quantiser), for the A/B.
      bench "l8b_b${b}_fp8w_fp8kv_unfused" NC_FP8_FUSED_MLP=0 NC_FP8_FUSED_NORM=0 -- "${L[@]}" \
        --kv-cache-dtype fp8 --quantization fp8
    done
  fi
} 2>&1 | tee "$out/fp8.log"
gpu_pack_out "$out" fp8 fp8.log
