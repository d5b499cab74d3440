#!/usr/bin/env bash
# Stop 19, call 2 (same warm machine as call 1, which left llama.cpp in build-llamacpp/): ceilings;
# llama.cpp beside nanocascade at the fixed 512+512 batches (0.6B shape); the layer kernel one
# launch a layer (default) and all layers a launch (NC_DECODE_LAYER_LOOP=1); nano-vLLM's workload
# on the 0.6B and 8B shapes; decode-b1 on the 0.6B, 1B and 8B shapes; fp8kv (#17's 18 cells) and
# sparse (#13's 8 cells); the whole GPU suite with NC_ALL_TESTS=1.
set -uo pipefail
R=/tmp/s19b; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
# The layer kernel's tests first (the weight stream is new): a failure or a hang skips its timings.
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='CudaDecodeLayer*:CudaFusedModel*' > $R/layer_tests.log 2>&1; lrc=$?; log "layer tests rc $lrc"
if [ -x build-llamacpp/llama-batched-bench ] && [ -s build-llamacpp/qwen3-0.6b-random-f16.gguf ]; then
  mkdir -p $R/peer; OUT=$R/peer LLAMA_BENCH_BIN=$PWD/build-llamacpp/llama-batched-bench LLAMA_GGUF=$PWD/build-llamacpp/qwen3-0.6b-random-f16.gguf \
    timeout 200 bash tools/gpu_peer_llamacpp.sh > $R/peer/console.log 2>&1; log "peer rc $?"
fi
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
fixed() { local tag=$1 b=$2; shift 2
  env "$@" timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $b --json $R/fixed_${tag}_$b.json > $R/fixed_${tag}_$b.log 2>&1; log "fixed $tag $b rc $?"; }
fixed auto 1; fixed loop 1 NC_DECODE_LAYER_LOOP=1; fixed off 1 NC_DECODE_LAYER=0; fixed auto 64; fixed auto 256
for m in qwen3-0.6b llama-3-8b; do
  timeout 90 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/$m.json --json $R/nano_$m.json > $R/nano_$m.log 2>&1; log "nano $m rc $?"
done
[ $lrc = 0 ] && (cd $nc && timeout 200 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json configs/llama-3.2-1b.json configs/llama-3-8b.json > $R/decode_b1.md 2>&1); log "b1 rc $?"
(cd $nc && OUT=$R timeout 90 $nc/bin/nc_gpu_bench fp8kv > $R/fp8kv.md 2>&1); log "fp8kv rc $?"
(cd $nc && OUT=$R timeout 90 $nc/bin/nc_gpu_bench sparse > $R/sparse.md 2>&1); log "sparse rc $?"
if [ "${NC_ALL_TESTS:-0}" = 1 ]; then
  NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout $((585 - SECONDS)) $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*:CudaDecodeLayer*:CudaFusedModel*' > $R/gpu_tests.log 2>&1; log "tests rc $?"
fi
tar -C /tmp -cJf "$OUT/s19b.tar.xz" s19b
cat $R/rcs.txt $R/ceilings.json; cat $R/peer/summary.md 2>/dev/null; grep -h "throughput\|decode-only" $R/fixed_*.log $R/nano_*.log; grep "^|\|block 0" $R/decode_b1.md | head -40
grep "^|" $R/fp8kv.md | head -30; grep "^|" $R/sparse.md | head -14
grep -E "^\[  (FAILED|PASSED)|tests ran|worst rel" $R/layer_tests.log | tail -14; grep -E "^\[  (FAILED|PASSED)|tests ran" $R/gpu_tests.log | tail -12
