#!/usr/bin/env bash
# Stop 23, call J (#13, any card): the committed selection: rounds only while the bin holds over 1024 keys (the crowded bin
# split again): the sparse GPU tests, sparse at pages of 16 and 8 (table + parts).
set -uo pipefail
R=/tmp/s23j; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 120 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > $R/sparse_tests.log 2>&1; log "sparse_tests rc $?"
b() { local name=$1; shift; mkdir -p $R/$name; (cd $nc && OUT=$R/$name timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b sparse_page16 sparse
NC_SPARSE_PAGE=8 b sparse_page8 sparse
tar -C /tmp -cJf "$OUT/s23j.tar.xz" s23j
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
grep -E "^\[  (FAILED|PASSED)|^\[  FAILED|tests ran|Failure|rror" $R/sparse_tests.log | tail -12
for f in $R/sparse_page*.md; do echo "$f"; grep "^| [0-9]" $f | head -16; done
