#!/usr/bin/env bash
# Stop 18, call 2: llama.cpp beside nanocascade at the fixed 512+512 batches 1/64/256 (0.6B shape),
# decode-b1 on both shapes (layer kernel and op by op), the cascade end-to-end workloads.
set -uo pipefail
R=/tmp/s18b; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
mkdir -p $R/peer
if [ -f build-gpu/llama-batched-bench.xz ]; then
  xz -dc build-gpu/llama-batched-bench.xz > /tmp/llama-batched-bench && chmod +x /tmp/llama-batched-bench
  OUT=$R/peer LLAMA_BENCH_BIN=/tmp/llama-batched-bench LLAMA_SRC_TAR=build-gpu/llama.cpp.tar.xz timeout 200 bash tools/gpu_peer_llamacpp.sh > $R/peer/console.log 2>&1; log "peer rc $?"
fi
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
for b in 1 64 256; do
  timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $b --json $R/fixed_$b.json > $R/fixed_$b.log 2>&1; log "fixed $b rc $?"
done
(cd $nc && timeout 150 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json configs/llama-3.2-1b.json configs/llama-3-8b.json > $R/decode_b1.md 2>&1); log "b1 rc $?"
if [ $SECONDS -lt 380 ]; then
  mkdir -p $R/e2e; OUT=$R/e2e NC_E2E_MODES=short timeout $((560 - SECONDS)) bash tools/gpu_cascade_e2e.sh build-gpu/new.tar.xz > $R/e2e/console.log 2>&1; log "e2e rc $?"
fi
tar -C /tmp -cJf "$OUT/s18b.tar.xz" s18b
cat $R/rcs.txt; cat $R/peer/summary.md 2>/dev/null; grep -h "throughput\|decode-only" $R/fixed_*.log; grep "^|\|block 0" $R/decode_b1.md | head -40; grep -E "^==|throughput" $R/e2e/cascade_e2e.log 2>/dev/null | head -20
