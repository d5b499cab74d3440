#!/usr/bin/env bash
# Issue #17's short-context cells: our FP8 decode kernel's split (attn_decode_fp8.cuh's
# estimate_work) swept over NC_FP8_DECODE_WAVES x NC_FP8_DECODE_MIN_CHUNK with `nc_gpu_bench
# fp8kv` (each row: group, batch, context, fp8 time us, best fraction of the copy rate), then
# nano-vLLM's workload with FP8 KV at the default and a candidate, all in one log ($OUT/sweep.log;
# the device tool returns at most 8 files a call). About 3 minutes with the unpacking.
#
#   tools/gpu_fp8_sweep.sh BUNDLE
set -uo pipefail
bundle=${1:?usage: tools/gpu_fp8_sweep.sh BUNDLE}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
log=$(cd "$out" && pwd)/sweep.log
{ nvidia-smi --query-gpu=name --format=csv,noheader; date -u; } > "$log"
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
timeout 60 python3 "$repo/bench/gpu_ceilings.py" >> "$log" 2>&1
for w in ${NC_WAVES:-3 2 4}; do
  for mc in ${NC_MIN_CHUNKS:-256 128 512}; do
    echo "== waves $w min_chunk $mc" >> "$log"
    (cd /tmp && NC_FP8_DECODE_WAVES=$w NC_FP8_DECODE_MIN_CHUNK=$mc timeout 40 \
      $nc/bin/nc_gpu_bench fp8kv 2>/dev/null | grep "^| [0-9]" \
      | awk -F'|' '{print $2,$3,$4,$7,$10}') >> "$log"
  done
done
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm
   --kv-cache-dtype fp8)
for c in ${NC_NANO_CANDIDATES:-3:256 2:128}; do
  echo "== nano fp8kv waves ${c%%:*} min_chunk ${c##*:}" >> "$log"
  NC_FP8_DECODE_WAVES=${c%%:*} NC_FP8_DECODE_MIN_CHUNK=${c##*:} timeout 60 \
    $nc/bin/nanocascade bench "${N[@]}" 2>&1 | grep "throughput\|decode-only" >> "$log"
done
tail -40 "$log"
