#!/usr/bin/env bash
# Stop 14, call 4 (#17): our FP8 decode kernel with two steps loaded ahead (NC_FP8_DECODE_DEPTH=2,
# default) against one; FP8 KV tests on both; the split's waves and minimum chunk on nano-vLLM's
# workload; the Llama-3-8B shape at batch 256 (512 + 512 tokens): bf16, FP8 KV, FP8 weights + KV.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.*' > "$out/tests_fp8kv.txt" 2>&1; t "fp8kv tests rc=$?"
tail -1 "$out/tests_fp8kv.txt"; grep -E "^\[  FAILED|Failure" "$out/tests_fp8kv.txt" | head
NC_FP8_DECODE_DEPTH=1 timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.OwnDecode*' > "$out/tests_fp8kv_depth1.txt" 2>&1; t "fp8kv tests depth 1 rc=$?"
tail -1 "$out/tests_fp8kv_depth1.txt"
cd "$out"
b() { local name=$1; shift; env "$@" OUT=$out/$name timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_$name.txt" 2>&1; t "fp8kv $name rc=$?"; echo "== $name: group batch ctx bf16cc bf16tc fp8cc fp8tc bf16frac fp8frac"; grep "^| [248] " "$out/fp8kv_$name.txt" | cut -d'|' -f2-10; }
b depth2 NC_FP8KV_LAYOUT=NHD
b depth1 NC_FP8_DECODE_DEPTH=1
cd - >/dev/null
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv --kv-cache-dtype fp8
NC_FP8_DECODE_DEPTH=1 nano fp8kv_depth1 --kv-cache-dtype fp8
NC_FP8_DECODE_WAVES=4 nano fp8kv_w4 --kv-cache-dtype fp8
NC_FP8_DECODE_WAVES=16 nano fp8kv_w16 --kv-cache-dtype fp8
NC_FP8_DECODE_MIN_CHUNK=128 nano fp8kv_c128 --kv-cache-dtype fp8
NC_FP8_DECODE_MIN_CHUNK=512 nano fp8kv_c512 --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
e2e() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
e2e l8b_b256_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256
e2e l8b_b256_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --kv-cache-dtype fp8
e2e l8b_b256_fp8w_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8 --kv-cache-dtype fp8
for f in "$out"/e2e_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
