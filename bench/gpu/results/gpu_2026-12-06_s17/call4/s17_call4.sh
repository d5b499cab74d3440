#!/usr/bin/env bash
# Stop 17, call 4: the whole-layer kernel after the K/V prefetch fix, the kept residual rows, the
# padded chunk merge: its tests, decode-b1 on the 0.6B shape with block 0's stage trace per L2
# prefetch mode (NC_DECODE_LAYER_FLAGS 0-4).
set -uo pipefail
R=/tmp/s17d; mkdir -p $R
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures timeout 100 $nc/bin/nc_gpu_tests --gtest_filter='CudaDecodeLayer*' > $R/tests.txt 2>&1
echo "tests rc $?" >> $R/rcs.txt
(cd $nc && timeout 200 $nc/bin/nc_gpu_bench decode-b1 configs/qwen3-0.6b.json > $R/decode_b1.md 2>&1; echo "b1 rc $?" >> $R/rcs.txt)
date -u >> $R/rcs.txt
tar -C /tmp -cJf "$OUT/s17d.tar.xz" s17d
cat $R/rcs.txt; grep -E "worst|kernels with|FAILED|PASSED" $R/tests.txt | head -30; cat $R/decode_b1.md | tail -20
