#!/usr/bin/env bash
# Stop 13, call 4 (H200; #14, #16): MoE/MLA benchmarks and MoE-model decode at fixed batches
# (512 prompt ids, 256 output tokens each, prefix cache and cascade off) on the H200, and the
# batch-1 decode benchmark (decode-b1).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 100 $nc/bin/nc_gpu_bench moe > "$out/bench_moe.md" 2>&1; t "bench moe rc=$?"
timeout 100 $nc/bin/nc_gpu_bench mla > "$out/bench_mla.md" 2>&1; t "bench mla rc=$?"
timeout 100 $nc/bin/nc_gpu_bench decode-b1 > "$out/bench_decode-b1.md" 2>&1; t "bench decode-b1 rc=$?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory 32GiB --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
run() { local name=$1; shift; timeout 75 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
for b in 1 64 256; do run q30_b$b --model $nc/configs/qwen3-30b-a3b.json --groups $b; done
for b in 1 64 256; do run dsv2l_b$b --model $nc/configs/deepseek-v2-lite.json --groups $b; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
