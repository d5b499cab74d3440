#!/usr/bin/env bash
# Stop 18, call 3b (same warm machine as 3a): ceilings; llama.cpp beside nanocascade at the fixed
# 512+512 batches 1/64/256 (0.6B shape); nanocascade with the layer kernel's Auto rule (default),
# off, and NC_FUSE=1; decode-b1 0.6B; the whole GPU suite with the new default.
set -uo pipefail
R=/tmp/s18c; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
if [ -x build-llamacpp/llama-batched-bench ] && [ -s build-llamacpp/qwen3-0.6b-random-f16.gguf ]; then
  mkdir -p $R/peer; OUT=$R/peer LLAMA_BENCH_BIN=$PWD/build-llamacpp/llama-batched-bench LLAMA_GGUF=$PWD/build-llamacpp/qwen3-0.6b-random-f16.gguf \
    timeout 200 bash tools/gpu_peer_llamacpp.sh > $R/peer/console.log 2>&1; log "peer rc $?"
fi
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
fixed() { local tag=$1 b=$2; shift 2
  env "$@" timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $b --json $R/fixed_${tag}_$b.json > $R/fixed_${tag}_$b.log 2>&1; log "fixed $tag $b rc $?"; }
fixed auto 1; fixed off 1 NC_DECODE_LAYER=0; fixed auto 64; fixed auto 256
timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --json $R/nano_06b.json > $R/nano_06b.log 2>&1; log "nano rc $?"
NC_FUSE=1 timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --json $R/nano_06b_fuse.json > $R/nano_06b_fuse.log 2>&1; log "nano fuse rc $?"
(cd $nc && timeout 60 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1.md 2>&1); log "b1 rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout $((570 - SECONDS)) $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' > $R/gpu_tests.log 2>&1; log "tests rc $?"
tar -C /tmp -cJf "$OUT/s18c.tar.xz" s18c
cat $R/rcs.txt $R/ceilings.json; cat $R/peer/summary.md 2>/dev/null; grep -h "throughput\|decode-only" $R/fixed_*.log $R/nano_*.log; grep "^|\|block 0" $R/decode_b1.md | head -12
grep -E "^\[  (FAILED|PASSED)|tests ran" $R/gpu_tests.log | tail -12
