#!/usr/bin/env bash
# Stop 21, the last call (under 300 s of device time left): the MLA tests, mla-forms with the fitted
# CUDA costs, and the attention and MLA GPU tests.
set -uo pipefail
R=/tmp/s21m; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; tar -C /tmp -cJf "$OUT/s21m.tar.xz" s21m; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new2.tar.xz; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout "$1" $nc/bin/nc_gpu_tests --gtest_filter="$2" > $R/$3.log 2>&1; log "$3 rc $?"; }
T 60 'CudaMlaExpanded*:CudaMlaFiModel*' mla_tests
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b mla_forms mla-forms
T $(( SECONDS < 110 ? 150 - SECONDS : 30 )) 'CudaAttention*:CudaMla*:-CudaMlaExpanded*:CudaMlaFiModel*' gpu_tests
tar -C /tmp -cJf "$OUT/s21m.tar.xz" s21m
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -20
grep "^|" $R/mla_forms.md | head -40
grep -E "^\[  (FAILED|PASSED)|tests ran|^\[ RUN" $R/gpu_tests.log | tail -14
