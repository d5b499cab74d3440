#!/usr/bin/env bash
# Stop 12, call 3: FP8 weights on the 8B shape now that load-time quantisation is threaded; FP8 tests.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 60 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8*' > "$out/gpu_tests.log" 2>&1; t "tests rc=$?"
F=(--backend cuda --load-format dummy --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512)
FX=(--no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512 --output-len 512)
e2e() { local name=$1; shift; /usr/bin/time -f "wall %e s" timeout 90 $nc/bin/nanocascade bench "${F[@]}" "$@" --json "$out/e2e_$name.json" > "$out/e2e_$name.log" 2>&1; t "e2e $name rc=$?"; }
e2e l8b_b256_fp8w_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8 --kv-cache-dtype fp8
e2e l8b_b256_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256
e2e l8b_b256_fp8w --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 256 --quantization fp8
e2e l8b_b64_fp8w_fp8kv --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 64 --quantization fp8 --kv-cache-dtype fp8
e2e l8b_b64_bf16 --model $nc/configs/llama-3-8b.json "${FX[@]}" --groups 64
e2e q06_fp8w_fp8kv --model $nc/configs/qwen3-0.6b.json --quantization fp8 --kv-cache-dtype fp8
e2e q06_bf16 --model $nc/configs/qwen3-0.6b.json
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
