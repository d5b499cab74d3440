#!/usr/bin/env bash
# Stop 19, call 4: main after MLA's expanded form landed (the CUDA backend keeps the absorbed ops
# through Backend::mla_attention_values' default): the whole GPU suite but SmolLM2's, decode-b1
# and nano-vLLM's workload on the Qwen3-0.6B shape.
set -uo pipefail
R=/tmp/s19d; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --json $R/nano_06b.json > $R/nano_06b.log 2>&1; log "nano rc $?"
(cd $nc && timeout 60 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1.md 2>&1); log "b1 rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout $((300 - SECONDS)) $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*' > $R/gpu_tests.log 2>&1; log "tests rc $?"
tar -C /tmp -cJf "$OUT/s19d.tar.xz" s19d
cat $R/rcs.txt $R/ceilings.json; grep -h "throughput\|decode-only" $R/nano_06b.log; grep "^|" $R/decode_b1.md | head -10
grep -E "^\[  (FAILED|PASSED)|tests ran" $R/gpu_tests.log | tail -12
