#!/usr/bin/env bash
# Stop 25, call B (any card): wip/flashinfer-pdl's whole GPU suite (main 8446309 plus FlashInfer's
# attention kernels and their merge launched with PDL, on by default on 9.x; the suite includes
# stop 23's OOB guard in the compaction tail, never run on a GPU); failures rerun with NC_PDL=0
# (main's behaviour); then the sparse and fp8kv benchmarks with PDL on and off, while time lasts.
set -uo pipefail
R=/tmp/s25b; mkdir -p $R/pdl; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s25b.tmp.tar.xz" s25b && mv "$OUT/s25b.tmp.tar.xz" "$OUT/s25b.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
B=build-b/pdl_f928dfc.tar.xz
NC_BENCH=none OUT=$R/pdl timeout 300 bash tools/gpu_check.sh run $B > $R/pdl/run.log 2>&1; log "pdl suite rc $?"
source tools/gpu_bundle.sh; gpu_unpack $B; log unpacked
failed=$(grep "^\[  FAILED  \] [A-Za-z]" $R/pdl/gpu_tests.log | awk '{print $4}' | sort -u | paste -sd: -)
if [ -n "$failed" ]; then
  NC_PDL=0 NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 120 $nc/bin/nc_gpu_tests --gtest_filter="$failed" > $R/failed_nopdl.log 2>&1; log "failed rerun NC_PDL=0 rc $?"
fi
b() { local name=$1; shift; [ $SECONDS -lt 540 ] || { log "$name skipped"; return; }; (cd $nc && OUT=$R timeout 45 $nc/bin/nc_gpu_bench "$@" > $R/$name.md 2>&1); log "$name rc $?"; }
b sparse_pdl sparse
NC_PDL=0 b sparse_nopdl sparse
b fp8kv_pdl fp8kv
NC_PDL=0 b fp8kv_nopdl fp8kv
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s25b.tar.xz" s25b; rm -f "$OUT/s25b.tmp.tar.xz"
cat $R/rcs.txt; grep -m1 -o "NVIDIA H[0-9]*[^|]*" $R/nvidia-smi.txt
grep -E "^\[  FAILED|tests ran|^\[  PASSED" $R/pdl/gpu_tests.log 2>/dev/null | tail -14
grep -E "^\[  FAILED|tests ran|^\[  PASSED" $R/failed_nopdl.log 2>/dev/null | tail -8
for f in $R/*.md; do echo "$f"; grep "^| [0-9]" $f | head -12; done
