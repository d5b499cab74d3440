#!/usr/bin/env bash
# Issue #15's GPU check of the prefix cache's host tier (docs/memory.md, "Host tier"), from a
# bundle made by `tools/gpu_check.sh pack` (it holds nanocascade, nc_gpu_tests and configs/):
#
#   1. `nanocascade bench --workload multi-turn` on Qwen3-0.6B's shape (random weights): 256
#      conversations x 8 turns behind one 2048-token system prompt, 128 tokens in and 256 out a
#      turn (786K history tokens, ~90 GB of K/V at 112 KiB a token), with a KV budget a quarter
#      of that (NC_KV, 22GiB): tier off, tier on (NC_HOST, 64GiB of pinned memory), and tier on
#      with --memory-trace (the hooks' cost per step against the run before; the trace drawn by
#      tools/memory_trace_svg.py);
#   2. nc_gpu_tests CudaKvCopy.*: the copies bit for bit, and the reload bandwidth against a plain
#      host-to-device copy of the same bytes from the same pinned memory, in one process
#      (target: ratio >= 0.8).
#
#   tools/gpu_host_tier.sh BUNDLE
#
# Environment: NC_KV (device KV budget, 22GiB), NC_HOST (host tier, 64GiB), NC_CONVS (256),
# NC_TURNS (8), NC_TIMEOUT (per bench run, 240 s). Output under $OUT (or ./gpu_out):
# host_tier.log, tier_off.json, tier_on.json, tier_trace.json, trace.json, kv_copy.log.
set -uo pipefail
bundle=${1:?usage: tools/gpu_host_tier.sh BUNDLE}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
cd "$nc"
FLAGS=(--backend cuda --load-format dummy --model configs/qwen3-0.6b.json --max-model-len 8192
       --max-num-batched-tokens 16384 --max-num-seqs 256 --kv-cache-memory "${NC_KV:-22GiB}")
MT=(--workload multi-turn --groups "${NC_CONVS:-256}" --prompts-per-group "${NC_TURNS:-8}"
    --system-len 2048 --question-len 128 --output-len 256)
t=${NC_TIMEOUT:-240}
run() {
  local name=$1
  shift
  echo "== $name: $*"
  timeout "$t" bin/nanocascade bench "${FLAGS[@]}" "${MT[@]}" "$@" --json "$out/$name.json"
}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  free -g | head -2
  bin/nanocascade memory "${FLAGS[@]}" --host-kv-cache "${NC_HOST:-64GiB}" --request-len 5120
  run tier_off
  run tier_on --host-kv-cache "${NC_HOST:-64GiB}"
  run tier_trace --host-kv-cache "${NC_HOST:-64GiB}" --memory-trace "$out/trace.json"
  echo "== reload bandwidth (CudaKvCopy)"
  bin/nc_gpu_tests --gtest_filter='CudaKvCopy.*' 2>&1 | tee "$out/kv_copy.log" | grep -E \
    "host tier reload|OK|FAILED|Failure"
  echo "== summary"
  python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
for name in ("tier_off", "tier_on", "tier_trace"):
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        print(f"{name}: no result"); continue
    j = json.load(open(p))
    c, h = j.get("cache", {}), j.get("host", {})
    steps = max(j.get("steps", 1), 1)
    print(f"{name}: hit rate {c.get('hit_rate', 0):.3f}, mean TTFT {j['mean_ttft_s'] * 1e3:.0f} ms, "
          f"output {j['output_tokens'] / j['time_s']:.0f} tok/s, {j['time_s'] / steps * 1e3:.2f} ms "
          f"a step, prefill tokens {j.get('prompt_tokens_computed', 0)}; host: reloaded "
          f"{h.get('reloaded_pages', 0)} pages ({h.get('bytes_to_device', 0) / 1e9:.1f} GB), "
          f"offloaded {h.get('offloaded_pages', 0)}, dropped {h.get('dropped_pages', 0)}, "
          f"hit tokens {h.get('hit_tokens', 0)}")
EOF
} 2>&1 | tee "$out/host_tier.log"
