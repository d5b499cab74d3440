#!/usr/bin/env bash
# Stop 13, call 11 (#17): the new FP8 decode defaults (GQA group <= 2 on the CUDA-core kernel with
# two tokens a stage; tensor cores from group 4): the FP8 GPU tests, and nano-vLLM's workload on
# the Qwen3-0.6B shape, bf16 against FP8 KV (default, and the old tensor-core choice forced).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8*' > "$out/tests_fp8.txt" 2>&1; t "fp8 tests rc=$?"
tail -2 "$out/tests_fp8.txt"; grep -E "^\[  FAILED|SKIPPED \]" "$out/tests_fp8.txt" | head
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv --kv-cache-dtype fp8
NC_FP8_DECODE_KERNEL=tc nano fp8kv_tc --kv-cache-dtype fp8
nano bf16_b
nano fp8kv_b --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
