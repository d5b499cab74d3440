#!/usr/bin/env bash
# Stop 29, short call: stop 27's GPU tests alone (fp8 sparse mixed step, graphs at GQA group 7,
# and the suites they touch), with the card's ceilings for the record.
B=$1
out=${OUT:-gpu_out}; mkdir -p "$out"
{ nvidia-smi; date -u; } > "$out/nvidia-smi.txt" 2>&1
source tools/gpu_bundle.sh
gpu_unpack "$(realpath "$B")" || exit 1
(cd "$nc" && timeout 200 ./bin/nc_gpu_tests \
   --gtest_filter='CudaFp8KvCache.*:CudaDecodeChoice.*:CudaSparse*:*Mla*Graph*:*Graph*' \
   > "$out/tests_s29.txt" 2>&1; echo "rc $?" >> "$out/tests_s29.txt")
grep -m1 -o "NVIDIA H[0-9]*[^|]*" "$out/nvidia-smi.txt"
grep -E "^\[  (PASSED|FAILED) |tests? from .* ran|^rc " "$out/tests_s29.txt"
grep -E "^\[  FAILED  \]" "$out/tests_s29.txt" | head -20
