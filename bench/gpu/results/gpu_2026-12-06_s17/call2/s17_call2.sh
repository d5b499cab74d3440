#!/usr/bin/env bash
# Stop 17, call 2: the whole-layer kernel after the latency fixes (norm in one pass, two rows a
# warp, tokens loaded ahead, a parallel merge): its tests, decode-b1 with block 0's stage trace.
set -uo pipefail
R=/tmp/s17b; mkdir -p $R
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 100 $nc/bin/nc_gpu_tests --gtest_filter='CudaDecodeLayer*' > $R/tests.txt 2>&1
echo "tests rc $?" >> $R/rcs.txt
(cd $nc && timeout 250 $nc/bin/nc_gpu_bench decode-b1 > $R/decode_b1.md 2>&1; echo "b1 rc $?" >> $R/rcs.txt)
date -u >> $R/rcs.txt
tar -C /tmp -cJf "$OUT/s17b.tar.xz" s17b
cat $R/rcs.txt; grep -E "worst|kernels with|FAILED|PASSED" $R/tests.txt | head -30; cat $R/decode_b1.md | tail -20
