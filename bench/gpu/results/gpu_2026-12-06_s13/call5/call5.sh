#!/usr/bin/env bash
# Stop 13, call 5 (#14): MLA decode against the larger of its byte and FLOP floors (with 4k
# contexts), and where DeepSeek-V2-Lite's time goes: Nsight Compute over a prefill (32 x 512
# prompt ids, one 16384-token step) and over decode steps at batch 256 (tools/gpu_profile_decode.sh).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 120 $nc/bin/nc_gpu_bench mla > "$out/bench_mla.md" 2>&1; t "bench mla rc=$?"
mkdir -p "$out/prof_prefill" "$out/prof_decode"
OUT=$out/prof_prefill NC_BATCH=32 NC_PROMPT_LEN=512 NC_OUTPUT_LEN=4 NC_SKIP=0 NC_COUNT=4000 \
  timeout 200 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/deepseek-v2-lite.json > "$out/prof_prefill/console.txt" 2>&1; t "prefill profile rc=$?"
OUT=$out/prof_decode NC_BATCH=256 NC_PROMPT_LEN=512 NC_OUTPUT_LEN=12 NC_SKIP=9000 NC_COUNT=1500 \
  timeout 220 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/deepseek-v2-lite.json > "$out/prof_decode/console.txt" 2>&1; t "decode profile rc=$?"
rm -rf "$out"/prof_*/gemm_cache
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
