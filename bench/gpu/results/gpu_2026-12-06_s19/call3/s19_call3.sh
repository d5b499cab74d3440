#!/usr/bin/env bash
# Stop 19, call 3: the layer kernel after call 2 (o copied with gate/up, the next layer's copies
# inside the barrier): its GPU tests, then decode-b1 on the Qwen3-0.6B shape; fixed batch 1; then
# main's bundle (build-gpu/main.tar.xz) on the same machine for an A/B.
set -uo pipefail
R=/tmp/s19c; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='CudaDecodeLayer*:CudaFusedModel*:*Mla*' > $R/layer_tests.log 2>&1; lrc=$?; log "layer tests rc $lrc"
[ $lrc = 0 ] && (cd $nc && timeout 120 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1.md 2>&1); log "b1 rc $?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
fixed() { local tag=$1 b=$2; shift 2
  env "$@" timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $b --json $R/fixed_${tag}_$b.json > $R/fixed_${tag}_$b.log 2>&1; log "fixed $tag $b rc $?"; }
fixed auto 1; fixed stream 1 NC_DECODE_LAYER_STREAM=1; fixed loopstream 1 NC_DECODE_LAYER_STREAM=1 NC_DECODE_LAYER_LOOP=1
# The same on main (fec9cc7: one launch a layer, no stream), for an A/B on this machine.
if [ -s build-gpu/main.tar.xz ]; then
  # main's binaries and libraries; the JIT headers and cache are the branch bundle's (same kernels).
  rm -rf /tmp/ncm && mkdir -p /tmp/ncm && tar -C /tmp/ncm -xJf build-gpu/main.tar.xz
  (cd /tmp/ncm/nc && LD_LIBRARY_PATH=/tmp/ncm/nc/lib:$LD_LIBRARY_PATH timeout 90 /tmp/ncm/nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1_main.md 2>&1); log "b1 main rc $?"

fi
tar -C /tmp -cJf "$OUT/s19c.tar.xz" s19c
cat $R/rcs.txt $R/ceilings.json; grep -h "throughput\|decode-only" $R/fixed_*.log; grep "^|\|block 0" $R/decode_b1.md | head -30; grep "^|\|block 0" $R/decode_b1_main.md | head -14
grep -E "^\[  (FAILED|PASSED)|tests ran|worst rel" $R/layer_tests.log | tail -16
