#!/usr/bin/env bash
# Stop 13, call 7 (#14, an H200 asked for): after head_linear's change, DeepSeek-V2-Lite decode at
# fixed batches 1/64/256 (as call 4), nano-vLLM's workload on both MoE shapes, and a profile of
# Qwen3-30B-A3B's decode at batch 256.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
kv=8GiB; grep -q H200 "$out/nvidia-smi.txt" && kv=32GiB
F=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory $kv --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
run() { local name=$1; shift; timeout 75 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
for b in 1 64 256; do run dsv2l_b$b --model $nc/configs/deepseek-v2-lite.json --groups $b; done
N=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory $kv --workload nano-vllm)
nano() { local name=$1; shift; timeout 110 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano q30 --model $nc/configs/qwen3-30b-a3b.json
nano dsv2l --model $nc/configs/deepseek-v2-lite.json
grep -h "throughput\|decode-only" "$out"/e2e_*.log "$out"/nano_*.log
mkdir -p "$out/prof_q30"
OUT=$out/prof_q30 NC_BATCH=256 NC_PROMPT_LEN=512 NC_OUTPUT_LEN=12 NC_SKIP=16000 NC_COUNT=2000 \
  timeout 200 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/qwen3-30b-a3b.json > "$out/prof_q30/console.txt" 2>&1; t "q30 profile rc=$?"
gzip -9 "$out"/prof_q30/ncu.csv; rm -rf "$out"/prof_*/gemm_cache
head -22 "$out/prof_q30/profile.md"
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
