#!/usr/bin/env bash
# Stop 21, the short call (little device time left): the MLA tests, mla-forms with the fitted CUDA
# costs, fp8kv with one wave (no split at batch 64 x 2048), and the attention/MLA/JIT GPU tests.
set -uo pipefail
R=/tmp/s21s; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; tar -C /tmp -cJf "$OUT/s21s.tar.xz" s21s; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new2.tar.xz; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 60 'CudaMlaExpanded*:CudaMlaFiModel*' mla_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms
NC_FP8_DECODE_WAVES=1 b fp8kv_w1 fp8kv
T $(( SECONDS < 170 ? 210 - SECONDS : 30 )) 'CudaAttention*:CudaMla*:CudaJit*:-CudaMlaExpanded*:CudaMlaFiModel*' gpu_tests
tar -C /tmp -cJf "$OUT/s21s.tar.xz" s21s
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -20
grep "^|" $R/mla_forms.md | head -40; grep "| 2048 |" $R/fp8kv_w1.md | head -9
grep -E "^\[  (FAILED|PASSED)|tests ran|^\[ RUN" $R/gpu_tests.log | tail -14
