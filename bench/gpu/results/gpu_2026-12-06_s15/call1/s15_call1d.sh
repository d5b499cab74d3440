#!/usr/bin/env bash
# Stop 15, last device minutes: the fused FP8 MLP / norm GPU tests first (results straight into
# $OUT, so a cut call still returns them), then the Llama-3-8B shape at batch 256, FP8 W + KV
# fused and unfused.
set -uo pipefail
out=$OUT
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"; grep -o "NVIDIA H[0-9]*[^|]*" "$out/nvidia-smi.txt" | head -1
timeout 80 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8Mlp*:CudaFp8Model*' > "$out/gpu_tests.txt" 2>&1; echo "gpu tests rc=$?"
tail -3 "$out/gpu_tests.txt"; grep -E "^\[  FAILED|SKIPPED \]|fp8 mlp" "$out/gpu_tests.txt" | head -30
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512 --model $nc/configs/llama-3-8b.json --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512 --groups 256 --quantization fp8 --kv-cache-dtype fp8)
timeout 55 $nc/bin/nanocascade bench "${F[@]}" > "$out/e2e_l8b_b256_fp8w_fp8kv.log" 2>&1; echo "fused rc=$?"; grep -h "throughput\|decode-only" "$out/e2e_l8b_b256_fp8w_fp8kv.log"
NC_FP8_FUSED_NORM=0 NC_FP8_FUSED_MLP=0 timeout 55 $nc/bin/nanocascade bench "${F[@]}" > "$out/e2e_l8b_b256_fp8w_fp8kv_unfused.log" 2>&1; echo "unfused rc=$?"; grep -h "throughput\|decode-only" "$out/e2e_l8b_b256_fp8w_fp8kv_unfused.log"
