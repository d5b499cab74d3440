#!/usr/bin/env bash
# Stop 14, call 5 (#17): the FP8 decode split's waves (NC_FP8_DECODE_WAVES 2, 3, 4, 6; 8 is the
# build's default) on nano-vLLM's workload and the fp8kv benchmark at 4; Nsight Compute over the
# Llama-3-8B shape's decode at batch 256 with FP8 weights + FP8 KV.
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
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
for w in 2 3 4 6 8; do NC_FP8_DECODE_WAVES=$w nano fp8kv_w$w --kv-cache-dtype fp8; done
NC_FP8_DECODE_WAVES=3 NC_FP8_DECODE_MIN_CHUNK=512 nano fp8kv_w3_c512 --kv-cache-dtype fp8
nano bf16_b
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
cd "$out"
NC_FP8_DECODE_WAVES=4 OUT=$out/w4 timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_w4.txt" 2>&1; t "fp8kv w4 rc=$?"
grep "^| [248] " "$out/fp8kv_w4.txt" | cut -d'|' -f2-4,6,10
cd - >/dev/null
mkdir -p "$out/prof"
OUT=$out/prof NC_BATCH=256 NC_PROMPT_LEN=512 NC_OUTPUT_LEN=48 NC_BENCH_ARGS="--quantization fp8 --kv-cache-dtype fp8" timeout 330 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/llama-3-8b.json > "$out/prof/run.log" 2>&1; t "profile rc=$?"
tail -45 "$out/prof/run.log"
gzip -f "$out"/prof/*.csv 2>/dev/null
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
