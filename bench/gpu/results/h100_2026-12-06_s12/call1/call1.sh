#!/usr/bin/env bash
# Stop 12, call 1: ceilings, GPU suite, MoE grouped GEMM bench, FP8 KV bench, decode-b1, e2e bf16 vs fp8 KV.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_FIXTURES_DIR_OVERRIDE=$nc/fixtures NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 120 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' > "$out/gpu_tests.log" 2>&1; t "tests rc=$?"
timeout 120 $nc/bin/nc_gpu_bench moe > "$out/bench_moe.md" 2>&1; t "bench moe rc=$?"
timeout 60 $nc/bin/nc_gpu_bench fp8kv > "$out/bench_fp8kv.md" 2>&1; t "bench fp8kv rc=$?"
timeout 40 $nc/bin/nc_gpu_bench decode-b1 > "$out/bench_decode-b1.md" 2>&1; t "bench decode-b1 rc=$?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
e2e() { local name=$1; shift; timeout 60 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
e2e q06_bf16 --model $nc/configs/qwen3-0.6b.json
e2e q06_fp8kv --model $nc/configs/qwen3-0.6b.json --kv-cache-dtype fp8
e2e q06_bf16_b --model $nc/configs/qwen3-0.6b.json
e2e q06_fp8kv_b --model $nc/configs/qwen3-0.6b.json --kv-cache-dtype fp8
e2e l8b_bf16 --model $nc/configs/llama-3-8b.json
e2e l8b_fp8kv --model $nc/configs/llama-3-8b.json --kv-cache-dtype fp8
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
e2e l8b_b256_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256
e2e l8b_b256_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --kv-cache-dtype fp8
e2e l8b_b256_fp8w --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
