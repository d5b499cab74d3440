#!/usr/bin/env bash
# Stop 23, call H (needs_h200: Qwen3-30B-A3B's 61 GB of weights plus KV for 256 requests do not
# fit 80 GB): #14's MoE shapes (fixed batches 1/64/256 x 512+256, then nano-vLLM's workload) on
# both MoE configs, then the H200 rows of #16/#17/#13/#14's microbenchmarks and end-to-end runs
# while time lasts. Re-tarred into $OUT every 20 s.
set -uo pipefail
R=/tmp/s23h; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23h.tmp.tar.xz" s23h && mv "$OUT/s23h.tmp.tar.xz" "$OUT/s23h.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
e() { local name=$1 lim=$2; shift 2; [ $SECONDS -lt $((585 - lim)) ] || { log "$name skipped"; return; }
  timeout $lim $nc/bin/nanocascade bench --backend cuda --load-format dummy "$@" --json $R/$name.json > $R/$name.log 2>&1; log "$name rc $?"; }
F=(--max-model-len 4096 --kv-cache-memory 32GiB --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
for m in qwen3-30b-a3b deepseek-v2-lite; do
  for g in 1 64 256; do e fixed_${m}_$g 60 "${F[@]}" --model $nc/configs/$m.json --groups $g; done
  e nano_${m} 90 --model $nc/configs/$m.json --workload nano-vllm
done
b() { local name=$1; shift; [ $SECONDS -lt 520 ] || { log "$name skipped"; return; }
  (cd $nc && OUT=$R timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b decode_choice decode-choice
b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
b fp8kv fp8kv
b sparse sparse
NC_SPARSE_PAGE=8 b sparse_page8 sparse
b mla mla
N=(--model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
e nano_bf16 60 "${N[@]}"
e nano_fp8kv 60 "${N[@]}" --kv-cache-dtype fp8
e nano8b_bf16 80 --model $nc/configs/llama-3-8b.json --workload nano-vllm
L=(--model $nc/configs/llama-3-8b.json --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups 256)
e l8b_b256_bf16 60 "${L[@]}"
e l8b_b256_fp8w_fp8kv 80 "${L[@]}" --kv-cache-dtype fp8 --quantization fp8
b fp8_gemm fp8
b moe moe
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23h.tar.xz" s23h; rm -f "$OUT/s23h.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
for f in $R/*.log; do echo "$f"; grep -h "throughput\|decode-only" $f | head -3; done
