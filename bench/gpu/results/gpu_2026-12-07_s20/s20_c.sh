#!/usr/bin/env bash
# Stop 20, call C: MLA's expanded form on CUDA (new bundle): its tests and the V2-Lite model test,
# nc_gpu_bench mla-forms, then the whole GPU suite; on an H200 also main's broad measurements
# (ceilings, fixed batches, nano-vLLM's workload on two shapes, decode-b1, fp8kv, sparse, mla).
set -uo pipefail
R=/tmp/s20c; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 100 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 120 'CudaMlaExpanded*:CudaMlaFiModel*:CudaMla.*:CudaJit*:CudaAttention.*' mla_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 100 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms
# Split/tile sweeps for #13's b16 cells (the kept pages' tensor-core plan) and #17's 2048-token cells.
for sp in 4 8 16 32; do NC_PREFILL_SPLIT_PAGES=$sp b sparse_split$sp sparse; done
for v in "3 128" "2 256"; do set -- $v; NC_FP8_DECODE_WAVES=$1 NC_FP8_DECODE_MIN_CHUNK=$2 b fp8kv_w$1_c$2 fp8kv; done
NC_PREFILL_SPLIT_PAGES=8 b fp8kv_split8 fp8kv
if grep -q H200 $R/nvidia-smi.txt && [ $SECONDS -lt 200 ]; then
  F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
  for g in 1 64 256; do
    timeout 60 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/qwen3-0.6b.json --no-prefix-cache --no-cascade \
      --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups $g --json $R/fixed_$g.json > $R/fixed_$g.log 2>&1; log "fixed $g rc $?"
  done
  for m in qwen3-0.6b llama-3-8b; do
    timeout 90 $nc/bin/nanocascade bench "${F[@]}" --model $nc/configs/$m.json --json $R/nano_$m.json > $R/nano_$m.log 2>&1; log "nano $m rc $?"
  done
  b decode_b1 decode-b1 configs/qwen3-0.6b.json configs/llama-3-8b.json
  b fp8kv fp8kv; b sparse sparse; b mla mla
fi
T $((280 - SECONDS)) '-*SmolLM2*:CudaMlaExpanded*:CudaMlaFiModel*:CudaMla.*:CudaJit*:CudaAttention.*' gpu_tests
tar -C /tmp -cJf "$OUT/s20c.tar.xz" s20c
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|tests ran|rel err|graph vs" $R/mla_tests.log | tail -30
grep "^|" $R/mla_forms.md; grep -h "throughput\|decode-only" $R/fixed_*.log $R/nano_*.log 2>/dev/null; grep "^|" $R/decode_b1.md 2>/dev/null | head -12
for f in $R/sparse*.md; do echo "$f"; grep "^| 32768 | 16 " $f | head -2; done; for f in $R/fp8kv*.md; do echo "$f"; grep "| 2048 |" $f | cut -d'|' -f2-4,9-11 | head -9; done; grep -E "^\[  (FAILED|PASSED)|tests ran" $R/gpu_tests.log | tail -12
