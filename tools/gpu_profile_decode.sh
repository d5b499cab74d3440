#!/usr/bin/env bash
# Where a decode step's device time goes, kernel by kernel: Nsight Compute (clocks left alone)
# times NC_COUNT consecutive kernel launches after skipping NC_SKIP, in the decode phase of a
# fixed batch (NC_BATCH requests x NC_PROMPT_LEN prompt ids, NC_OUTPUT_LEN output tokens; default
# 128 x 900, 64) of CONFIG's shape (default configs/qwen3-0.6b.json; a path, or a name under the
# bundle's configs/), random weights, CUDA graphs (ncu times each graph node).
# bench/profile_report.py groups the kernels per decode step (the layer count from CONFIG).
# NC_SKIP and NC_COUNT default to 14000 and 700 scaled by layers / 28 (the launches of a
# Qwen3-0.6B run's prefill, then about two decode steps). The report gives kernels per step and
# per layer. Batch 1 (issue #16's latency case): NC_BATCH=1 NC_OUTPUT_LEN=256 NC_SKIP=30000
# NC_COUNT=1000 (the prefill is then a few hundred launches; the skip lands in the decode).
# NC_PDL=0 and NC_FUSE=0 (inherited by both runs) turn programmatic dependent launch and the fused
# kernels off for an A/B (cuda_backend.h). NC_BENCH_ARGS adds flags to both runs' `nanocascade
# bench` (e.g. "--kv-cache-dtype fp8" or "--quantization fp8").
#
#   tools/gpu_profile_decode.sh BUNDLE [CONFIG]   (on the GPU machine; results under $OUT)
set -uo pipefail
bundle=$(realpath "${1:?usage: tools/gpu_profile_decode.sh BUNDLE}")
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
nc=/tmp/nc
rm -rf "$nc" && tar -C /tmp -xJf "$bundle" || exit 1
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
config=${2:-configs/qwen3-0.6b.json}
[ -f "$config" ] || config="$nc/configs/$(basename "$config")"
[ -f "$config" ] || { echo "gpu_profile_decode: no config $config" >&2; exit 1; }
config=$(realpath "$config")
layers=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$config") || exit 1
skip=${NC_SKIP:-$((14000 * layers / 28))}
count=${NC_COUNT:-$((700 * layers / 28))}
batch=${NC_BATCH:-128}
# The GEMM tuner times candidates at each shape's first use (cuda_gemm.h), hundreds of launches
# that would shift NC_SKIP's window: one run without ncu first fills the tuning file, which the
# profiled run then reads (the file comes back under $OUT/gemm_cache).
export NC_GEMM_CACHE=${NC_GEMM_CACHE:-$(realpath "$out")/gemm_cache}
cmd=("$nc/bin/nanocascade" bench --backend cuda --load-format dummy
  --model "$config" --max-model-len 4096 --max-num-batched-tokens 16384
  --max-num-seqs "$batch" --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0
  --prompts-per-group 1 --question-len "${NC_PROMPT_LEN:-900}" --output-len "${NC_OUTPUT_LEN:-64}"
  --groups "$batch" ${NC_BENCH_ARGS:-})
"${cmd[@]}" > "$out/tuning_run.log" 2>&1
echo "tuning run status $?"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -x "$ncu" ] || { echo "gpu_profile_decode: ncu not found" >&2; exit 1; }
"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv \
  --launch-skip "$skip" --launch-count "$count" \
  "${cmd[@]}" > "$out/ncu.csv" 2> "$out/ncu.err"
echo "ncu status $?"
python3 "$repo/bench/profile_report.py" "$out/ncu.csv" --layers "$layers" | tee "$out/profile.md"
