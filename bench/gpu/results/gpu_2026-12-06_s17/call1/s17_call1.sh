#!/usr/bin/env bash
# Stop 17, call 1 (H200 asked): the whole-layer decode kernel's GPU tests and #16's batch-1 table
# (nc_gpu_bench decode-b1, layer kernel on/off), then #17's FP8 decode split sweep. One tar.
set -uo pipefail
R=/tmp/s17a; mkdir -p $R
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
B=build-gpu/new.tar.xz
source tools/gpu_bundle.sh; gpu_unpack $B
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='CudaDecodeLayer*:CudaFused*' > $R/tests.txt 2>&1
echo "tests rc $?" >> $R/rcs.txt; date -u >> $R/rcs.txt
(cd $nc && timeout 200 $nc/bin/nc_gpu_bench decode-b1 > $R/decode_b1.md 2>&1; echo "b1 rc $?" >> $R/rcs.txt)
date -u >> $R/rcs.txt
OUT=$R/sweep NC_WAVES="3 2" NC_MIN_CHUNKS="256 128" timeout 170 bash tools/gpu_fp8_sweep.sh $B > $R/sweep_console.txt 2>&1
echo "sweep rc $?" >> $R/rcs.txt; date -u >> $R/rcs.txt
tar -C /tmp -cJf "$OUT/s17a.tar.xz" s17a
cat $R/rcs.txt; grep -E "worst|kernels with|OK|FAILED|PASSED" $R/tests.txt | head -30; cat $R/decode_b1.md | tail -16; tail -22 $R/sweep/sweep.log
