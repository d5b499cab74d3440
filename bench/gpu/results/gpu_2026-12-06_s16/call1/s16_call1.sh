#!/usr/bin/env bash
# Stop 16, the one call the budget allows, most valuable first (results go straight to $OUT, so a
# cut call keeps what finished): the NCCL group-of-one tests (#21); then #17 on the H200 through
# tools/gpu_fp8.sh: ceilings, the Llama-3-8B shape at batch 256 (bf16, FP8 KV, FP8 W+KV fused
# and unfused), nano-vLLM's workload, the FP8 GPU tests, the kernels, and batch 64 last.
set -uo pipefail
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; date -u >> "$OUT/nvidia-smi.txt"
export NCCL_NVLS_ENABLE=0
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export NC_NCCL_LIBRARY=$(python3 -c "import nvidia.nccl as n; print(list(n.__path__)[0])")/lib/libnccl.so.2
ls -la "$NC_NCCL_LIBRARY" > "$OUT/nccl.txt" 2>&1
LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures \
  timeout 90 $nc/bin/nc_gpu_tests --gtest_filter='CudaNccl*' >> "$OUT/nccl.txt" 2>&1; echo "nccl tests rc=$?"
tail -4 "$OUT/nccl.txt"
OUT=$OUT/a NC_PARTS="ceilings 8b" NC_8B_BATCHES=256 bash tools/gpu_fp8.sh build-gpu/new.tar.xz
OUT=$OUT/b NC_PARTS="nano tests kernels" bash tools/gpu_fp8.sh build-gpu/new.tar.xz
OUT=$OUT/c NC_PARTS="8b" NC_8B_BATCHES=64 bash tools/gpu_fp8.sh build-gpu/new.tar.xz
