#!/usr/bin/env bash
# The rows the open issues still lack on an H200, in one device call of at most ~10 minutes,
# from a bundle made by `tools/gpu_check.sh pack` (docs/gpu.md). Ask for it with needs_h200:
# Qwen3-30B-A3B's random bf16 weights (61 GB) plus the KV of 256 requests do not fit 80 GB.
#
#   tools/gpu_h200_rows.sh BUNDLE
#
# In order (each part skipped once the call's time runs short; NC_PARTS picks parts, default
# "moe micro dense fp8"):
#   moe    #14: Qwen3-30B-A3B and DeepSeek-V2-Lite shapes, random weights: fixed batches of
#          1/64/256 requests x (512 prompt ids + 256 output tokens), then nano-vLLM's workload
#   micro  the card's ceilings (bench/gpu_ceilings.py); nc_gpu_bench decode-choice (#16's
#          attention by GQA group), decode-b1 (#16's batch-1 latency), fp8kv (#17), sparse at
#          pages 16 and 8 (#13), mla (#14)
#   dense  #16/#17: nano-vLLM's workload on the Qwen3-0.6B shape (bf16, FP8 KV) and the
#          Llama-3-8B shape (bf16); the 8B shape at 256 x (512 + 512), bf16 and FP8 weights + KV
#   fp8    #17: nc_gpu_bench fp8 (the FP8 GEMM against the card's FP8 rate); nc_gpu_bench moe
#          (#14's grouped GEMM TFLOP/s)
# Raw files under $OUT/h200 (or ./gpu_out/h200), re-tarred into $OUT/h200.tar.xz every 20 s so
# that a call cut short still returns what it made. llama.cpp's peer (#16) needs two calls of
# its own: tools/llamacpp_prebuilt.sh.
set -uo pipefail
bundle=$(realpath "${1:?usage: tools/gpu_h200_rows.sh BUNDLE}")
out=${OUT:-gpu_out}
mkdir -p "$out/h200"
out=$(cd "$out" && pwd)
R=$out/h200
SECONDS=0
{ nvidia-smi; date -u; } > "$R/nvidia-smi.txt" 2>&1
(while sleep 20; do
   tar -C "$out" -cJf "$out/h200.tmp.tar.xz" h200 && mv "$out/h200.tmp.tar.xz" "$out/h200.tar.xz"
 done) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> "$R/rcs.txt"; }
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
log unpacked
parts=" ${NC_PARTS:-moe micro dense fp8} "
want() { [[ "$parts" == *" $1 "* ]]; }
limit=${NC_CALL_LIMIT:-585}

# e NAME SECONDS [flags...]: one `nanocascade bench` run with random weights, if time is left.
e() {
  local name=$1 t=$2
  shift 2
  [ $SECONDS -lt $((limit - t)) ] || { log "$name skipped"; return; }
  timeout "$t" "$nc/bin/nanocascade" bench --backend cuda --load-format dummy "$@" \
    --json "$R/$name.json" > "$R/$name.log" 2>&1
  log "$name rc $?"
}
# b NAME [args...]: one nc_gpu_bench part, if time is left.
b() {
  local name=$1
  shift
  [ $SECONDS -lt $((limit - 60)) ] || { log "$name skipped"; return; }
  (cd "$nc" && OUT=$R timeout 60 "$nc/bin/nc_gpu_bench" "$@" > "$R/$name.md" 2>&1)
  log "$name rc $?"
}

if want moe; then
  F=(--max-model-len 4096 --kv-cache-memory 32GiB --max-num-seqs 512 --no-prefix-cache
     --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1
     --question-len 512 --output-len 256)
  for m in qwen3-30b-a3b deepseek-v2-lite; do
    for g in 1 64 256; do e "fixed_${m}_$g" 60 "${F[@]}" --model "$nc/configs/$m.json" --groups "$g"; done
    e "nano_$m" 90 --model "$nc/configs/$m.json" --workload nano-vllm
  done
fi
if want micro; then
  timeout 30 python3 "$(dirname "$0")/../bench/gpu_ceilings.py" > "$R/ceilings.json" 2>&1
  log "ceilings rc $?"
  b decode_choice decode-choice
  b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
  b fp8kv fp8kv
  b sparse sparse
  NC_SPARSE_PAGE=8 b sparse_page8 sparse
  b mla mla
fi
if want dense; then
  N=(--model "$nc/configs/qwen3-0.6b.json" --workload nano-vllm)
  e nano_bf16 60 "${N[@]}"
  e nano_fp8kv 60 "${N[@]}" --kv-cache-dtype fp8
  e nano8b_bf16 80 --model "$nc/configs/llama-3-8b.json" --workload nano-vllm
  L=(--model "$nc/configs/llama-3-8b.json" --max-model-len 4096 --max-num-batched-tokens 16384
     --max-num-seqs 512 --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0
     --prompts-per-group 1 --question-len 512 --output-len 512 --groups 256)
  e l8b_b256_bf16 60 "${L[@]}"
  e l8b_b256_fp8w_fp8kv 80 "${L[@]}" --kv-cache-dtype fp8 --quantization fp8
fi
if want fp8; then
  b fp8_gemm fp8
  b moe_gemm moe
fi
kill "$tarpid" 2>/dev/null
tar -C "$out" -cJf "$out/h200.tar.xz" h200 && rm -f "$out/h200.tmp.tar.xz"
cat "$R/rcs.txt" "$R/ceilings.json" 2>/dev/null
grep -m1 -o "NVIDIA H[0-9]*[^|]*" "$R/nvidia-smi.txt"
for f in "$R"/*.log; do
  echo "$(basename "$f" .log): $(grep -h "throughput" "$f" | head -1)"
  grep -h "decode-only" "$f" | head -1
done
