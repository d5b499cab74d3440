#!/usr/bin/env bash
# Stop 16, call 2: what call 1 produced but the device tool could not return (8 files at most):
# the FP8 GPU tests and our FP8 decode kernel's table, with the ceilings and nano-vLLM's workload
# again in this call; everything tarred into one file.
set -uo pipefail
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; date -u >> "$OUT/nvidia-smi.txt"
mkdir -p /tmp/s16b
OUT=/tmp/s16b NC_PARTS="ceilings tests kernels nano" timeout 500 bash tools/gpu_fp8.sh build-gpu/new.tar.xz > /dev/null 2>&1
tar -C /tmp -cJf "$OUT/s16b.tar.xz" s16b
grep -h "throughput\|exit\|PASSED\|FAILED" /tmp/s16b/*.log /tmp/s16b/gpu_tests.txt | head -20; cat /tmp/s16b/ceilings.json
