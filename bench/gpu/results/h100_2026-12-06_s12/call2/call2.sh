#!/usr/bin/env bash
# Stop 12, call 2: the 9 fixture tests (call 1 pointed them at a wrong folder), MoE grouped tests,
# MoE/MLA models end to end (grouped now auto) vs NC_MOE_GEMM=simt, FP8-weights 8B diagnosis.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='CudaFusedModel.*:CudaStreaming.*:CudaModelVariants.*:CudaMoe*:CudaMla*' > "$out/gpu_tests.log" 2>&1; t "tests rc=$?"
kv=8GiB; grep -q H200 "$out/nvidia-smi.txt" && kv=16GiB
M=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory $kv --num-requests 64 --max-input 512 --max-output 512)
moe() { local name=$1; shift; timeout 80 $nc/bin/nanocascade bench "${M[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
moe q30_grouped --model $nc/configs/qwen3-30b-a3b.json
NC_MOE_GEMM=simt moe q30_simt --model $nc/configs/qwen3-30b-a3b.json
moe dsv2l_grouped --model $nc/configs/deepseek-v2-lite.json
NC_MOE_GEMM=simt moe dsv2l_simt --model $nc/configs/deepseek-v2-lite.json
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
timeout 100 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 64 --quantization fp8 --json "$out/e2e_l8b_b64_fp8w.json" > "$out/e2e_l8b_b64_fp8w.log" 2>&1; t "l8b b64 fp8w rc=$?"
timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 64 --json "$out/e2e_l8b_b64_bf16.json" > "$out/e2e_l8b_b64_bf16.log" 2>&1; t "l8b b64 bf16 rc=$?"
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
