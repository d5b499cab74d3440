#!/usr/bin/env bash
# Stop 23, call C (#13; any card): the sparse GPU tests over the selection's coarse pass (bins over
# the scores' range, then the threshold bin's keys by one warp or the radix select), sparse-parts
# and sparse with the coarse pass and with the radix select over all keys (NC_SPARSE_SELECT=radix),
# then ncu's stall reasons of the selection kernel, both ways.
set -uo pipefail
R=/tmp/s23c; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23c.tmp.tar.xz" s23c && mv "$OUT/s23c.tmp.tar.xz" "$OUT/s23c.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > $R/sparse_tests.log 2>&1; log "sparse_tests rc $?"
b() { local name=$1; shift; (cd $nc && OUT=$R timeout 60 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b parts_coarse sparse-parts
NC_SPARSE_SELECT=radix b parts_radix sparse-parts
b sparse_coarse sparse
NC_SPARSE_SELECT=radix b sparse_radix sparse
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for mode in coarse radix; do
  (cd $nc && NC_SPARSE_SELECT=$mode timeout 90 "$ncu" --clock-control none --kernel-name regex:select_pages --launch-skip 20 --launch-count 1 \
     --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy --section SchedulerStats \
     $nc/bin/nc_gpu_bench sparse-parts > $R/ncu_$mode.txt 2>&1); log "ncu $mode rc $?"
done
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23c.tar.xz" s23c; rm -f "$OUT/s23c.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
grep -E "^\[  (FAILED|PASSED)|^\[  FAILED|tests ran|Failure" $R/sparse_tests.log | tail -12
for f in $R/parts_*.md $R/sparse_*.md; do echo "$f"; grep "^| [0-9]" $f | head -8; done
for f in $R/ncu_*.txt; do echo "$f"; grep -E "Duration|Stall|Warp Cycles|Issued Ipc|Achieved Occ|Registers|Shared Memory" $f | head -24; done
