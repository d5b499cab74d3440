#!/usr/bin/env bash
# Issue #18's GPU throughput check of structured output: nano-vLLM's workload (Qwen3-0.6B shape,
# random weights, CUDA graphs, 256 requests) with and without a JSON schema on every request,
# alternating plain / schema / plain / schema in one call, from a bundle made by
# `tools/gpu_check.sh pack`. A schema request ends at max tokens or when its JSON is complete, so
# the comparison is output tok/s and the mean decode step time (bench's JSON), with each run's
# output tokens printed beside them.
#
#   tools/gpu_structured.sh BUNDLE        (SCHEMA: bench/schemas/nanovllm_records.json; the
#                                          object schema with its 4096-character string is the
#                                          measured worst case, docs/benchmarks.md)
#
# Output under $OUT (or ./gpu_out): structured.log, plain_<i>.json, schema_<i>.json.
set -uo pipefail
bundle=$(realpath "${1:?usage: tools/gpu_structured.sh BUNDLE}")
repo=$(cd "$(dirname "$0")/.." && pwd)
schema=$(realpath "${SCHEMA:-$repo/bench/schemas/nanovllm_records.json}")
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
nc=/tmp/nc
[ -x "$nc/bin/nanocascade" ] || { rm -rf "$nc" && tar -C /tmp -xJf "$bundle"; } || exit 1
export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
FLAGS=(--backend cuda --load-format dummy --model "$nc/configs/qwen3-0.6b.json" --max-model-len 4096
       --max-num-batched-tokens 16384 --max-num-seqs 512)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  for i in 1 2; do
    echo "== plain $i"
    timeout 150 "$nc/bin/nanocascade" bench "${FLAGS[@]}" --json "$out/plain_$i.json"
    echo "== schema $i ($(basename "$schema"))"
    timeout 150 "$nc/bin/nanocascade" bench "${FLAGS[@]}" --json-schema "$schema" \
      --json "$out/schema_$i.json"
  done
} > "$out/structured.log" 2>&1
grep -E "^==|throughput|decode" "$out/structured.log"
