#!/usr/bin/env bash
# Stop 20, call F: after the PlanQuery fix (call E's floating point exception: a positional
# initialisation had shifted) and the CUDA costs fitted to call D: the MLA tests, mla-forms again
# (Auto's regret), then the whole GPU suite but SmolLM2's (the model is not carried).
set -uo pipefail
R=/tmp/s20f; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 15 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 40 $nc/bin/nc_gpu_tests --gtest_filter='CudaMlaExpanded*:CudaMlaFiModel*' > $R/mla_tests.log 2>&1; log "mla tests rc $?"
(cd $nc && OUT=$R timeout 25 $nc/bin/nc_gpu_bench mla-forms > $R/mla_forms.md 2>&1); log "mla-forms rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout $((150 - SECONDS)) $nc/bin/nc_gpu_tests --gtest_filter='-*SmolLM2*:CudaMlaExpanded*:CudaMlaFiModel*' > $R/gpu_tests.log 2>&1; log "tests rc $?"
tar -C /tmp -cJf "$OUT/s20f.tar.xz" s20f
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|rel err|graph vs" $R/mla_tests.log | tail -24
grep "^|" $R/mla_forms.md; grep -E "^\[  (FAILED|PASSED)|tests ran|^\[ RUN" $R/gpu_tests.log | tail -14
