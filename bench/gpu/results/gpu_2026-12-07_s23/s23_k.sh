#!/usr/bin/env bash
# Stop 23, call K (#13, any card): A/B in one call of the selection's coarse rounds: 3 rounds
# (the crowded bin's keys copied out and binned again) against 1 (NC_SPARSE_ROUNDS=1: one coarse
# pass, then the radix select over the bin's keys), sparse-parts and sparse at pages 16 and 8,
# each twice, alternating; the sparse GPU tests under both.
set -uo pipefail
R=/tmp/s23k; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
T() { NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 60 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > $R/$1.log 2>&1; log "$1 rc $?"; }
T tests_r3
NC_SPARSE_ROUNDS=1 T tests_r1
b() { local name=$1; shift; mkdir -p $R/$name; (cd $nc && OUT=$R/$name timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
for i in 1 2; do
  NC_SPARSE_ROUNDS=1 b p16_r1_$i sparse
  b p16_r3_$i sparse
  NC_SPARSE_ROUNDS=1 NC_SPARSE_PAGE=8 b p8_r1_$i sparse-parts
  NC_SPARSE_PAGE=8 b p8_r3_$i sparse-parts
done
NC_SPARSE_PAGE=8 b p8_r3_full sparse
tar -C /tmp -cJf "$OUT/s23k.tar.xz" s23k
cat $R/rcs.txt; grep -m1 "H[12]00" $R/nvidia-smi.txt
grep -h "PASSED\|FAILED" $R/tests_*.log
for f in $R/p16_*.md; do echo "$f"; grep "^| [0-9]" $f | sed -n '1p;5p;9,16p'; done
for f in $R/p8_r*_[12].md; do echo "$f"; grep "^| [0-9]" $f | head -8; done
grep "^| [0-9]" $R/p8_r3_full.md | head -8
