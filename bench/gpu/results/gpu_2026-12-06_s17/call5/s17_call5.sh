#!/usr/bin/env bash
# Stop 17, call 5: the layer kernel's final form (line prefetches, no next-layer prefetch) on the
# Llama-3-8B shape beside the op-by-op step (nc_gpu_bench decode-b1), traced.
set -uo pipefail
R=/tmp/s17e; mkdir -p $R
{ nvidia-smi; date -u; } > $R/nvidia-smi.txt 2>&1
source tools/gpu_bundle.sh; gpu_unpack build-gpu/new.tar.xz
(cd $nc && timeout 240 $nc/bin/nc_gpu_bench decode-b1 configs/llama-3-8b.json > $R/decode_b1.md 2>&1; echo "b1 rc $?" >> $R/rcs.txt)
date -u >> $R/rcs.txt
tar -C /tmp -cJf "$OUT/s17e.tar.xz" s17e
cat $R/rcs.txt; tail -20 $R/decode_b1.md
