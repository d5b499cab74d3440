#!/usr/bin/env bash
# Stop 20, call D (the device time left allowed ~200 s): MLA's expanded form on CUDA, its tests
# and the V2-Lite model test, then nc_gpu_bench mla-forms; the sparse b16 split sweep if time is left.
set -uo pipefail
R=/tmp/s20d; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 100 $nc/bin/nc_gpu_tests --gtest_filter='CudaMlaExpanded*:CudaMlaFiModel*:CudaMla.*:CudaJit*' > $R/mla_tests.log 2>&1; log "mla tests rc $?"
(cd $nc && OUT=$R timeout 75 $nc/bin/nc_gpu_bench mla-forms > $R/mla_forms.md 2>&1); log "mla-forms rc $?"
for sp in 8 32; do [ $SECONDS -lt 185 ] && { (cd $nc && OUT=$R NC_PREFILL_SPLIT_PAGES=$sp timeout 15 $nc/bin/nc_gpu_bench sparse > $R/sparse_split$sp.md 2>&1); log "sparse split $sp rc $?"; }; done
tar -C /tmp -cJf "$OUT/s20d.tar.xz" s20d
cat $R/rcs.txt $R/ceilings.json; grep -E "^\[  (FAILED|PASSED)|tests ran|rel err|graph vs|Failure|error" $R/mla_tests.log | tail -40
grep "^|" $R/mla_forms.md; for f in $R/sparse_split*.md; do echo $f; grep "^| 32768 | 16 " $f | head -2; done
