#!/usr/bin/env bash
# Stop 14, call 6: the final defaults (our FP8 decode kernel, two steps ahead, 3 waves): the GPU
# suite (all but SmolLM2's), the fp8kv benchmark (ours; FlashInfer's with NC_FP8_DECODE_IMPL=fi),
# nano-vLLM's workload bf16 / FP8 KV (twice each) / FP8 KV on FlashInfer's kernels, the Llama-3-8B
# shape at batch 256 (bf16, FP8 KV, FP8 weights + KV), and Nsight Compute over the FP8 KV decode
# of the Qwen3-0.6B shape (batch 128 x 900).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 240 $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' > "$out/gpu_tests.txt" 2>&1; t "gpu tests rc=$?"
tail -3 "$out/gpu_tests.txt"; grep -E "^\[  FAILED|SKIPPED \]" "$out/gpu_tests.txt" | head -20
cd "$out"
OUT=$out/own timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_own.txt" 2>&1; t "fp8kv own rc=$?"
NC_FP8_DECODE_IMPL=fi OUT=$out/fi timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_fi.txt" 2>&1; t "fp8kv fi rc=$?"
grep "^| [248] " "$out/fp8kv_own.txt" | cut -d'|' -f2-4,6,7,10
cd - >/dev/null
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv --kv-cache-dtype fp8
NC_FP8_DECODE_IMPL=fi nano fp8kv_fi --kv-cache-dtype fp8
nano bf16_b
nano fp8kv_b --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
e2e() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
e2e l8b_b256_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256
e2e l8b_b256_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --kv-cache-dtype fp8
e2e l8b_b256_fp8w_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8 --kv-cache-dtype fp8
for f in "$out"/e2e_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
mkdir -p "$out/prof"
OUT=$out/prof NC_BENCH_ARGS="--kv-cache-dtype fp8" timeout 150 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/qwen3-0.6b.json > "$out/prof/run.log" 2>&1; t "profile rc=$?"
grep -A16 "^| kernels" "$out/prof/run.log"
gzip -f "$out"/prof/*.csv 2>/dev/null
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
