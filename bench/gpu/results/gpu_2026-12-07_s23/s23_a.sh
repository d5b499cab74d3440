#!/usr/bin/env bash
# Stop 23, call A (meant for an H200; #16 and #17's H200 rows): ceilings, decode-choice, decode-b1,
# fp8kv, fp8 GEMM, sparse, mla microbenchmarks; then nano-vLLM's workload on the Qwen3-0.6B shape
# (bf16, FP8 KV, FP8 weights + KV) and on the Llama-3-8B shape (bf16), and the 8B shape at batch
# 256 x 512+512 (bf16, FP8 KV, FP8 weights + KV) while time lasts. Re-tarred into $OUT every 20 s.
set -uo pipefail
R=/tmp/s23a; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23a.tmp.tar.xz" s23a && mv "$OUT/s23a.tmp.tar.xz" "$OUT/s23a.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new4.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b decode_choice decode-choice
b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
b fp8kv fp8kv
b fp8_gemm fp8
b sparse sparse
b mla mla
e() { local name=$1 lim=$2; shift 2; [ $SECONDS -lt $((585 - lim)) ] || { log "$name skipped"; return; }
  timeout $lim $nc/bin/nanocascade bench --backend cuda --load-format dummy "$@" --json $R/$name.json > $R/$name.log 2>&1; log "$name rc $?"; }
N=(--model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
e nano_bf16 80 "${N[@]}"
e nano_fp8kv 80 "${N[@]}" --kv-cache-dtype fp8
e nano8b_bf16 120 --model $nc/configs/llama-3-8b.json --workload nano-vllm
L=(--model $nc/configs/llama-3-8b.json --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups 256)
e l8b_b256_bf16 90 "${L[@]}"
e l8b_b256_fp8w_fp8kv 110 "${L[@]}" --kv-cache-dtype fp8 --quantization fp8
e nano_fp8w_fp8kv 100 "${N[@]}" --kv-cache-dtype fp8 --quantization fp8
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23a.tar.xz" s23a; rm -f "$OUT/s23a.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; head -3 $R/nvidia-smi.txt | tail -1; grep -m1 "H[12]00" $R/nvidia-smi.txt
for f in $R/*.log; do echo "$f"; grep -h "throughput\|decode-only\|floor\|roofline" $f | head -6; done
