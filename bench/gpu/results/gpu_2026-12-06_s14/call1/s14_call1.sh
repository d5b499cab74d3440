#!/usr/bin/env bash
# Stop 14, call 1 (#17): our FP8 decode kernel (attn_decode_fp8.cuh): the FP8 GPU tests, the fp8kv
# benchmark with it and with FlashInfer's kernels (NC_FP8_DECODE_IMPL=fi), and nano-vLLM's workload
# on the Qwen3-0.6B shape: bf16, FP8 KV (ours), FP8 KV (FlashInfer's, the stop-13 default).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 240 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.*' > "$out/tests_fp8kv.txt" 2>&1; t "fp8kv tests rc=$?"
tail -2 "$out/tests_fp8kv.txt"; grep -E "^\[  FAILED|SKIPPED \]|Failure|rel_error|Expected" "$out/tests_fp8kv.txt" | head -20
cd "$out"
OUT=$out/own timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_own.txt" 2>&1; t "fp8kv own rc=$?"
cat "$out/fp8kv_own.txt" | tail -22
NC_FP8_DECODE_IMPL=fi OUT=$out/fi timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_fi.txt" 2>&1; t "fp8kv fi rc=$?"
cat "$out/fp8kv_fi.txt" | tail -22
cd - >/dev/null
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv_own --kv-cache-dtype fp8
NC_FP8_DECODE_IMPL=fi nano fp8kv_fi --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8*:-CudaFp8Kv.*' > "$out/tests_fp8_rest.txt" 2>&1; t "other fp8 tests rc=$?"
tail -2 "$out/tests_fp8_rest.txt"; grep -E "^\[  FAILED" "$out/tests_fp8_rest.txt" | head
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
