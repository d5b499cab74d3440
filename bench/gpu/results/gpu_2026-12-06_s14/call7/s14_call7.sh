#!/usr/bin/env bash
# Stop 14, call 7 (#17): the final defaults on an H200 if one comes: FP8 KV tests, the fp8kv
# benchmark (ours; FlashInfer's with NC_FP8_DECODE_IMPL=fi), nano-vLLM's workload bf16 / FP8 KV /
# FP8 KV on FlashInfer's kernels, the Llama-3-8B shape at batch 256 bf16 / FP8 weights + KV.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"; head -12 "$out/nvidia-smi.txt" | grep -i "h100\|h200"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings; cat "$out/ceilings.txt"
timeout 60 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.*' > "$out/tests_fp8kv.txt" 2>&1; t "fp8kv tests rc=$?"
tail -1 "$out/tests_fp8kv.txt"; grep -E "^\[  FAILED" "$out/tests_fp8kv.txt" | head
cd "$out"
OUT=$out/own timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_own.txt" 2>&1; t "fp8kv own rc=$?"
NC_FP8_DECODE_IMPL=fi OUT=$out/fi timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_fi.txt" 2>&1; t "fp8kv fi rc=$?"
grep "^| [248] " "$out/fp8kv_own.txt" | cut -d'|' -f2-4,7,10
cd - >/dev/null
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv --kv-cache-dtype fp8
NC_FP8_DECODE_IMPL=fi nano fp8kv_fi --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only\|with prefill" "$f"; done
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
e2e() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
e2e l8b_b256_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256
e2e l8b_b256_fp8w_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8 --kv-cache-dtype fp8
for f in "$out"/e2e_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only\|fp8 path\|lt-" "$f" | head -4; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
