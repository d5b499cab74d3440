#!/usr/bin/env bash
# Stop 21, call B (#17, #13 and #16 on the H200, the same warm machine as call A): tools/gpu_fp8.sh
# (ceilings, the FP8 tests, fp8kv ours/FlashInfer's and the FP8 GEMM, nano-vLLM's workload in
# bf16/FP8 KV/FP8 W+KV, the Llama-3-8B shape at batch 256 in bf16/FP8); the sparse benchmark with
# FlashInfer's own split and fixed splits of the kept pages' tensor-core plan (NC_PREFILL_SPLIT_PAGES,
# eager plans only; 100000: no split); decode-choice likewise; then decode-b1, the Qwen3-0.6B shape at
# fixed batches and nano-vLLM's workload on the 8B shape while time lasts.
set -uo pipefail
R=/tmp/s21b; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
OUT=$R/fp8 NC_KEEP_FILES=1 NC_8B_BATCHES="256" timeout 290 bash tools/gpu_fp8.sh build-gpu/new2.tar.xz > /dev/null 2>&1; log "fp8 rc $?"
nc=/tmp/nc; export LD_LIBRARY_PATH="$nc/lib" NC_JIT_INCLUDE_DIR="$nc/jit" NC_JIT_CACHE="$nc/jit_cache"
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b sparse sparse
for sp in 8 32 100000; do NC_PREFILL_SPLIT_PAGES=$sp b sparse_split$sp sparse; done
b decode_choice decode-choice
[ $SECONDS -lt 380 ] && NC_PREFILL_SPLIT_PAGES=16 b decode_choice_split16 decode-choice
[ $SECONDS -lt 400 ] && b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
for g in 1 64 256; do
  [ $SECONDS -lt 420 ] && { timeout 25 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $g --json $R/fixed_$g.json > $R/fixed_$g.log 2>&1; log "fixed $g rc $?"; }
done
[ $SECONDS -lt 430 ] && { timeout $((465 - SECONDS)) $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/llama-3-8b.json --json $R/nano_8b.json > $R/nano_8b.log 2>&1; log "nano 8b rc $?"; }
tar -C /tmp -cJf "$OUT/s21b.tar.xz" s21b
cat $R/rcs.txt; grep -v "^| \|^|--\|^$" $R/fp8/fp8.log | head -60
for f in $R/sparse*.md; do echo "$f"; grep "^| 32768 | 16 \|^| 131072 | 16 " $f | head -4; done
grep -h "throughput\|decode-only" $R/fixed_*.log $R/nano_8b.log 2>/dev/null; grep "^|" $R/decode_b1.md 2>/dev/null | head -12
