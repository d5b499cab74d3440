#!/usr/bin/env bash
# Stop 29, call A: the H200 rows (tools/gpu_h200_rows.sh, cut to ~470 s), then stop 27's
# GPU tests (fp8 sparse mixed step, graphs at GQA group 7) and the suites they touch.
B=$1
NC_CALL_LIMIT=${NC_CALL_LIMIT:-470} bash tools/gpu_h200_rows.sh "$B"
out=${OUT:-gpu_out}; mkdir -p "$out"
nc=/tmp/nc   # unpacked by the rows script; the environment gpu_unpack exports:
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}" NC_JIT_INCLUDE_DIR="$nc/jit" NC_JIT_CACHE="$nc/jit_cache"
[ -d "$nc/fixtures" ] && export NC_FIXTURES_DIR_OVERRIDE="$nc/fixtures"
(cd "$nc" && timeout 100 ./bin/nc_gpu_tests \
   --gtest_filter='CudaFp8KvCache.*:CudaDecodeChoice.*:CudaSparse*:*Mla*Graph*:*Graph*' \
   > "$out/tests_s29.txt" 2>&1; echo "rc $?" >> "$out/tests_s29.txt")
tail -30 "$out/tests_s29.txt"
