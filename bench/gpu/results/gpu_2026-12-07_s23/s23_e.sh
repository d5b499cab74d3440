#!/usr/bin/env bash
# Stop 23, call E (#13's GPU check in one call, any card): the sparse GPU tests, then
# tools/gpu_long_context.sh whole (sparse table, e2e decode at 64k, 8k/32k/128k prefill, the 1M
# stream) from the bundle of the coarse-pass selection. Re-tarred into $OUT every 20 s.
set -uo pipefail
R=/tmp/s23e; mkdir -p $R; SECONDS=0
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
( while sleep 20; do tar -C /tmp -cJf "$OUT/s23e.tmp.tar.xz" s23e && mv "$OUT/s23e.tmp.tar.xz" "$OUT/s23e.tar.xz"; done ) &
tarpid=$!
log() { echo "$(date -u +%T) t=$SECONDS $*" >> $R/rcs.txt; }
source tools/gpu_bundle.sh; gpu_unpack ${BUNDLE:-build-gpu/new6.tar.xz}; log unpacked
timeout 30 python3 bench/gpu_ceilings.py > $R/ceilings.json 2>&1; log "ceilings rc $?"
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 100 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*:*Streaming*:*LongContext*' > $R/sparse_tests.log 2>&1; log "sparse_tests rc $?"
OUT=$R/lc timeout $((575 - SECONDS)) bash tools/gpu_long_context.sh ${BUNDLE:-build-gpu/new6.tar.xz} > $R/lc_console.log 2>&1; log "long_context rc $?"
kill $tarpid 2>/dev/null; tar -C /tmp -cJf "$OUT/s23e.tar.xz" s23e; rm -f "$OUT/s23e.tmp.tar.xz"
cat $R/rcs.txt $R/ceilings.json; grep -m1 "H[12]00" $R/nvidia-smi.txt
grep -E "^\[  (FAILED|PASSED)|^\[  FAILED|tests ran" $R/sparse_tests.log | tail -8
grep "^| [0-9]" $R/lc/bench_sparse.md | head -8
grep -v "^|" $R/lc/long_context.log 2>/dev/null | tail -30
