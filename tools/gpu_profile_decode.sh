#!/usr/bin/env bash
# Where a decode step's device time goes, kernel by kernel: Nsight Compute (clocks left alone)
# times NC_COUNT consecutive kernel launches after skipping NC_SKIP, in the decode phase of a
# fixed batch (128 requests x 900 prompt ids, 64 output tokens, Qwen3-0.6B shape, random weights,
# CUDA graphs: ncu times each graph node). bench/profile_report.py groups the kernels.
#
#   tools/gpu_profile_decode.sh BUNDLE     (on the GPU machine; results under $OUT)
set -uo pipefail
bundle=$(realpath "${1:?usage: tools/gpu_profile_decode.sh BUNDLE}")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
nc=/tmp/nc
rm -rf "$nc" && tar -C /tmp -xJf "$bundle" || exit 1
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -x "$ncu" ] || { echo "gpu_profile_decode: ncu not found" >&2; exit 1; }
"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv \
  --launch-skip "${NC_SKIP:-14000}" --launch-count "${NC_COUNT:-700}" \
  "$nc/bin/nanocascade" bench --backend cuda --load-format dummy \
  --model "$nc/configs/qwen3-0.6b.json" --max-model-len 4096 --max-num-batched-tokens 16384 \
  --max-num-seqs 128 --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 \
  --prompts-per-group 1 --question-len 900 --output-len 64 --groups 128 > "$out/ncu.csv" 2> "$out/ncu.err"
echo "ncu status $?"
python3 "$repo/bench/profile_report.py" "$out/ncu.csv" | tee "$out/profile.md"
