#!/usr/bin/env bash
# Stop 13, call 10 (#17): FlashInfer's CUDA-core decode kernel over FP8 pages launched with 2 or 4
# tokens per lane row and stage (NC_FP8_DECODE_TILE, attn_decode.cuh): the FP8 GPU tests with each
# tile, `nc_gpu_bench fp8kv` with each, and nano-vLLM's workload on the Qwen3-0.6B shape with FP8 KV
# on tensor cores (the default) and on the CUDA-core kernel with the best tile, beside bf16.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
for tile in 1 2 4; do
  NC_FP8_DECODE_TILE=$tile timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8Kv*' > "$out/tests_tile$tile.txt" 2>&1; t "fp8 kv tests tile $tile rc=$?"
  tail -2 "$out/tests_tile$tile.txt"
done
NC_FP8_DECODE_KERNEL=cc NC_FP8_DECODE_TILE=2 timeout 150 $nc/bin/nc_gpu_tests --gtest_filter='*Fp8Kv*' > "$out/tests_cc_tile2.txt" 2>&1; t "fp8 kv tests, every fp8 decode on cuda cores, tile 2 rc=$?"; tail -2 "$out/tests_cc_tile2.txt"; grep -E "^\[  FAILED" "$out/tests_cc_tile2.txt"
for tile in 1 2 4; do
  OUT=$out NC_FP8_DECODE_TILE=$tile timeout 90 $nc/bin/nc_gpu_bench fp8kv > "$out/fp8kv_tile$tile.md" 2>&1; t "fp8kv tile $tile rc=$?"
  mv "$out/fp8kv.csv" "$out/fp8kv_tile$tile.csv" 2>/dev/null
done
cat "$out/fp8kv_tile1.md" | grep "^|"; for tile in 2 4; do grep "^|" "$out/fp8kv_tile$tile.md" | cut -d'|' -f2-4,7,10; done
N=(--backend cuda --load-format dummy --model $nc/configs/qwen3-0.6b.json --workload nano-vllm)
nano() { local name=$1; shift; timeout 100 $nc/bin/nanocascade bench "${N[@]}" "$@" --json "$out/nano_$name.json" > "$out/nano_$name.log" 2>&1; t "nano $name rc=$?"; }
nano bf16
nano fp8kv_tc --kv-cache-dtype fp8
best=$(python3 - "$out" <<'PY'
import csv, sys
d = sys.argv[1]
def mean(t):
    rows = list(csv.DictReader(open(f"{d}/fp8kv_tile{t}.csv")))
    return sum(float(r["fp8_cc_us"]) for r in rows) / len(rows)
print(min((2, 4), key=mean))
PY
)
echo "best tile $best"
NC_FP8_DECODE_KERNEL=cc NC_FP8_DECODE_TILE=$best nano fp8kv_cc_tile$best --kv-cache-dtype fp8
for f in "$out"/nano_*.log; do echo "== $(basename $f)"; grep -h "throughput\|decode-only" "$f"; done
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
