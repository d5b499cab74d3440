#!/usr/bin/env bash
# Stop 13, call 8 (#17): why FP8 KV gives nano-vLLM's workload 1.10x and not ~1.35x: nano-vLLM's
# workload on the Qwen3-0.6B shape with bf16 and FP8 KV, and Nsight Compute over decode steps of
# each (batch 128 x 900 prompt ids, tools/gpu_profile_decode.sh).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
timeout 100 $nc/bin/nanocascade bench "${N[@]}" --json "$out/nano_bf16.json" > "$out/nano_bf16.log" 2>&1; t "nano bf16 rc=$?"
timeout 100 $nc/bin/nanocascade bench "${N[@]}" --kv-cache-dtype fp8 --json "$out/nano_fp8kv.json" > "$out/nano_fp8kv.log" 2>&1; t "nano fp8kv rc=$?"
grep -h "throughput\|decode-only\|memory:" "$out"/nano_*.log
for kv in bf16 fp8; do
  mkdir -p "$out/prof_$kv"
  OUT=$out/prof_$kv NC_BENCH_ARGS="--kv-cache-dtype $kv" timeout 200 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/qwen3-0.6b.json > "$out/prof_$kv/console.txt" 2>&1; t "profile $kv rc=$?"
  gzip -9 "$out/prof_$kv/ncu.csv"; rm -rf "$out/prof_$kv/gemm_cache"
  sed -n 1,20p "$out/prof_$kv/profile.md"
done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
