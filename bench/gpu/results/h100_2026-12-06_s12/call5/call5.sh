#!/usr/bin/env bash
# Stop 12, call 5: MoE routing as a warp per token:
# MoE/MLA tests, `nc_gpu_bench moe`, MoE models end to end.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='CudaMoe*:CudaMla*:CudaModelVariants.*' > "$out/gpu_tests.log" 2>&1; t "tests rc=$?"
timeout 120 $nc/bin/nc_gpu_bench moe > "$out/bench_moe.md" 2>&1; t "bench moe rc=$?"
kv=8GiB; grep -q H200 "$out/nvidia-smi.txt" && kv=16GiB
M=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory $kv --num-requests 64 --max-input 512 --max-output 512)
moe() { local name=$1; shift; timeout 80 $nc/bin/nanocascade bench "${M[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
moe q30_grouped --model $nc/configs/qwen3-30b-a3b.json
moe dsv2l_grouped --model $nc/configs/deepseek-v2-lite.json
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
