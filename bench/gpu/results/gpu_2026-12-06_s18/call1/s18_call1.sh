#!/usr/bin/env bash
# Stop 18, call 1 (H200 asked): ceilings, the whole GPU suite (the layer kernel's tests among them:
# its last refactors never ran on a GPU), decode-b1 on the 0.6B shape, nano-vLLM's workload on the
# 0.6B and 8B shapes, fixed batches 1/64/256, and the 0.6B decode profile at batch 128.
set -uo pipefail
R=/tmp/s18a; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' > $R/gpu_tests.log 2>&1; log "tests rc $?"
(cd $nc && timeout 110 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1_06b.md 2>&1); log "b1 rc $?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
timeout 90 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --json $R/nano_06b.json > $R/nano_06b.log 2>&1; log "nano06 rc $?"
timeout 100 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/llama-3-8b.json --json $R/nano_8b.json > $R/nano_8b.log 2>&1; log "nano8b rc $?"
for b in 1 64 256; do
  timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $b --json $R/fixed_$b.json > $R/fixed_$b.log 2>&1; log "fixed $b rc $?"
done
if [ $SECONDS -lt 420 ]; then
  mkdir -p $R/prof; OUT=$R/prof timeout $((540 - SECONDS)) bash tools/gpu_profile_decode.sh build-gpu/new.tar.xz > $R/prof/console.log 2>&1; log "prof rc $?"
fi
tar -C /tmp -cJf "$OUT/s18a.tar.xz" s18a
cat $R/rcs.txt; cat $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|tests ran" $R/gpu_tests.log | tail -8
grep -h "throughput\|decode-only\|with prefill" $R/nano_*.log $R/fixed_*.log; grep "^|" $R/decode_b1_06b.md | head -12; head -30 $R/prof/profile.md 2>/dev/null
