#!/usr/bin/env bash
# Stop 13, call 1 (#13): where a sparse decode step's time goes. The selection kernels timed alone
# (nc_gpu_bench sparse-parts), then Nsight Compute on one page-score and one selection launch of
# the 128k x batch-16 x budget-2048 case, and the GPU sparse tests.
set -uo pipefail
out=$OUT/r; mkdir -p "$out"
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$out/times.txt"; }
nc=/tmp/nc; rm -rf $nc; tar -C /tmp -xJf build-gpu/new.tar.xz
export LD_LIBRARY_PATH=$nc/lib NC_JIT_INCLUDE_DIR=$nc/jit NC_JIT_CACHE=$nc/jit_cache
export NC_FIXTURES_DIR_OVERRIDE=$PWD/tests/fixtures
nvidia-smi > "$out/nvidia-smi.txt" 2>&1; date -u >> "$out/nvidia-smi.txt"
t start
timeout 100 python3 bench/gpu_ceilings.py > "$out/ceilings.txt" 2>&1; t ceilings
timeout 120 $nc/bin/nc_gpu_bench sparse-parts > "$out/parts.md" 2>&1; t "parts rc=$?"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
# Per case: 53 score launches, then 53 selection launches; the 128k/16/2048 case is the 5th.
for k in page_scores select_pages; do
  timeout 150 "$ncu" --clock-control none --kernel-name regex:$k --launch-skip 212 --launch-count 1 \
    --set full $nc/bin/nc_gpu_bench sparse-parts > "$out/ncu_$k.txt" 2>&1; t "ncu $k rc=$?"
done
timeout 120 $nc/bin/nc_gpu_tests --gtest_filter='*Sparse*' > "$out/tests.txt" 2>&1; t "tests rc=$?"
tail -3 "$out/tests.txt"
cat "$out/parts.md"
t done
tar -C "$OUT" -czf "$OUT/results.tgz" r && rm -rf "$OUT/r"
