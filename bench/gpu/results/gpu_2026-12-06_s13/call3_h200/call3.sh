#!/usr/bin/env bash
# Stop 13, call 3 (#13): the selection's block size by candidate count (256-1024 threads); the same runs as call 2.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 120 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > "$out/tests.txt" 2>&1; t "tests rc=$?"
tail -3 "$out/tests.txt"
timeout 120 $nc/bin/nc_gpu_bench sparse-parts > "$out/parts.md" 2>&1; t "parts rc=$?"
cat "$out/parts.md"
OUT=$out NC_PARTS="sparse" timeout 400 bash tools/gpu_long_context.sh build-gpu/new.tar.xz > "$out/lc.txt" 2>&1; t "long context rc=$?"
cat "$out/bench_sparse.md" 2>/dev/null; tail -5 "$out/lc.txt"
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
