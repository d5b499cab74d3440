#!/usr/bin/env bash
# Stop 14, call 3 (#17): our FP8 decode kernel, KV heads of one (request, chunk) adjacent in the
# grid; register path (default) against the cp.async ring (NC_FP8_DECODE_RING=1), NHD and HND
# pages, FlashInfer's kernels over HND; FP8 KV tests on both paths; nano-vLLM's workload in both
# layouts.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.*' > "$out/tests_fp8kv.txt" 2>&1; t "fp8kv tests rc=$?"
tail -1 "$out/tests_fp8kv.txt"; grep -E "^\[  FAILED|Failure" "$out/tests_fp8kv.txt" | head
NC_FP8_DECODE_RING=1 timeout 200 $nc/bin/nc_gpu_tests --gtest_filter='CudaFp8Kv.*' > "$out/tests_fp8kv_ring.txt" 2>&1; t "fp8kv tests ring rc=$?"
tail -1 "$out/tests_fp8kv_ring.txt"; grep -E "^\[  FAILED|Failure" "$out/tests_fp8kv_ring.txt" | head
cd "$out"
b() { local name=$1; shift; env "$@" OUT=$out/$name timeout 120 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_$name.txt" 2>&1; t "fp8kv $name rc=$?"; echo "== $name: group batch ctx bf16cc bf16tc fp8cc fp8tc"; grep "^| [248] " "$out/fp8kv_$name.txt" | cut -d'|' -f2-8; }
b reg_nhd NC_FP8KV_LAYOUT=NHD
b ring_nhd NC_FP8_DECODE_RING=1 NC_FP8KV_LAYOUT=NHD
b reg_hnd NC_FP8KV_LAYOUT=HND
b ring_hnd NC_FP8_DECODE_RING=1 NC_FP8KV_LAYOUT=HND
b fi_hnd NC_FP8_DECODE_IMPL=fi NC_FP8KV_LAYOUT=HND
cd - >/dev/null
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv_reg --kv-cache-dtype fp8
NC_FP8_DECODE_RING=1 nano fp8kv_ring --kv-cache-dtype fp8
nano bf16_hnd --kv-layout HND
nano fp8kv_reg_hnd --kv-cache-dtype fp8 --kv-layout HND
NC_FP8_DECODE_RING=1 nano fp8kv_ring_hnd --kv-cache-dtype fp8 --kv-layout HND
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
