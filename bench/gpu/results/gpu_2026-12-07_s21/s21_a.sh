#!/usr/bin/env bash
# Stop 21, call A (#14 on the H200, and the whole GPU suite after stop 20's fixes): the MLA tests,
# nc_gpu_bench mla-forms with the fitted CUDA costs, mla and moe; the Qwen3-30B-A3B and
# DeepSeek-V2-Lite shapes at fixed batches 1/64/256 (512 prompt ids, 256 output tokens, prefix cache
# and cascade off, KV 32 GiB, as stop 13's call 4) and on nano-vLLM's workload; then the GPU suite.
set -uo pipefail
R=/tmp/s21a; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; tar -C /tmp -cJf "$OUT/s21a.tar.xz" s21a; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new2.tar.xz; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 60 'CudaMlaExpanded*:CudaMlaFiModel*' mla_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms; b mla mla
F=(--max-model-len 4096 --kv-cache-memory 32GiB --max-num-seqs 512
   --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 256)
e() { local name=$1; shift; timeout 60 $nc/bin/nanocascade bench --backend cuda --load-format dummy "$@" --json $R/$name.json > $R/$name.log 2>&1; log "$name rc $?"; }
for m in deepseek-v2-lite qwen3-30b-a3b; do
  for g in 1 64 256; do e fixed_${m}_$g "${F[@]}" --model $nc/configs/$m.json --groups $g; done
done
[ $SECONDS -lt 170 ] && e nano_qwen3-30b-a3b --model $nc/configs/qwen3-30b-a3b.json --max-model-len 4096 --kv-cache-memory 40GiB --max-num-seqs 512
T $(( SECONDS < 210 ? 250 - SECONDS : 40 )) 'CudaAttention*:CudaMla*:CudaMoe*:CudaJit*:-CudaMlaExpanded*:CudaMlaFiModel*' gpu_tests
tar -C /tmp -cJf "$OUT/s21a.tar.xz" s21a
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -20
grep "^|" $R/mla_forms.md | head -40; grep "^|" $R/mla.md | head -30
for f in $R/fixed_*.log $R/nano_*.log; do echo "$f"; grep -h "throughput\|decode-only\|memory:" $f; done
for f in $R/fp8kv*.md; do echo "$f"; grep "| 2048 |" $f | head -9; done
grep -E "^\[  (FAILED|PASSED)|tests ran|^\[ RUN" $R/gpu_tests.log | tail -14
