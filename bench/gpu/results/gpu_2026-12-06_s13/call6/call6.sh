#!/usr/bin/env bash
# Stop 13, call 6 (#14): MLA's per-head projections (head_linear) as one cuBLAS strided-batched
# GEMM: the MoE/MLA GPU tests, DeepSeek-V2-Lite decode at fixed batches 1/64/256 (as call 4) and
# a profile of its decode at batch 256 (as call 5).
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='CudaMoe*:CudaMla*:CudaModelVariants.*:*Deepseek*:*DeepSeek*' > "$out/gpu_tests.log" 2>&1; t "tests rc=$?"
tail -3 "$out/gpu_tests.log"; grep -E "FAILED|Failure" "$out/gpu_tests.log" | head
kv=8GiB; grep -q H200 "$out/nvidia-smi.txt" && kv=32GiB
F=(--backend cuda --load-format dummy --max-model-len 4096 --kv-cache-memory $kv --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
run() { local name=$1; shift; timeout 75 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
for b in 1 64 256; do run dsv2l_b$b --model $nc/configs/deepseek-v2-lite.json --groups $b; done
grep -h "decode-only\|throughput" "$out"/e2e_*.log
mkdir -p "$out/prof_decode"
OUT=$out/prof_decode NC_BATCH=256 NC_PROMPT_LEN=512 NC_OUTPUT_LEN=12 NC_SKIP=9000 NC_COUNT=1500 \
  timeout 200 bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz configs/deepseek-v2-lite.json > "$out/prof_decode/console.txt" 2>&1; t "decode profile rc=$?"
rm -rf "$out"/prof_*/gemm_cache
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
