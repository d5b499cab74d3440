#!/usr/bin/env bash
# Stop 23, call B (#13; any card): the sparse GPU tests over the new selection (one coarse pass,
# then the radix select over the threshold's bin; PDL between the scores and the selection), the
# sparse benchmark with PDL on and off (NC_PDL=0), then tools/gpu_long_context.sh's decode part
# (batch 16 at 64k, dense vs --sparse-budget 2048) while time lasts. Re-tarred every 20 s.
set -uo pipefail
R=/tmp/s23b; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23b.tmp.tar.xz" s23b && mv "$OUT/s23b.tmp.tar.xz" "$OUT/s23b.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new5.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 120 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > $R/sparse_tests.log 2>&1; log "sparse_tests rc $?"
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b sparse sparse
NC_PDL=0 b sparse_nopdl sparse
b sparse2 sparse
OUT=$R/lc NC_PARTS=decode timeout $(( SECONDS < 400 ? 560 - SECONDS : 60 )) bash tools/gpu_long_context.sh ${BUNDLE:-build-gpu/new5.tar.xz} > /dev/null 2>&1; log "long_context decode rc $?"
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23b.tar.xz" s23b; rm -f "$OUT/s23b.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
grep -E "^\[  (FAILED|PASSED)|^\[  FAILED|tests ran" $R/sparse_tests.log | tail -12
for f in $R/sparse*.md; do echo "$f"; grep "^| [0-9]" $f | head -16; done
grep -h "throughput\|decode-only" $R/lc/*.log 2>/dev/null | head
