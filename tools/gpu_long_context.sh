#!/usr/bin/env bash
# Issue #13's GPU runs in one device call, from a bundle made by `tools/gpu_check.sh pack` (it
# holds nanocascade, nc_gpu_bench and configs/). Each part prints raw lines to its own file
# under $OUT (or ./gpu_out) and the whole console to long_context.log:
#
#   sparse   `nc_gpu_bench sparse`: sparse decode attention at 32k/128k context, batch 16/64,
#            budget 2048/4096, against the bytes it must read over the copy bandwidth measured in
#            the same run, and against dense attention                       -> bench_sparse.md
#   decode   end-to-end decode of batch 16 at a 64k context (random weights, --load-format
#            dummy), dense and with --sparse-budget 2048: decode-only steps' tokens/s
#                                                            -> e2e_decode_{dense,sparse}.{log,json}
#   prefill  one prompt of 8k, 32k and 128k tokens (chunked prefill, budget 16384) on
#            Llama-3.1-8B's shape: tokens/s, and a fit t(n) = c + a n + b n^2 of the three
#            times-to-first-token that splits the time into the GEMMs' part (linear in n) and
#            attention's (quadratic), each as a FLOP rate              -> prefill_{8k,32k,128k}.*
#   stream   a stream of NC_STREAM_TOKENS (1M) tokens with --streaming-window: the peak KV pages
#            (flat: sinks + window, whatever the stream's length)          -> stream.{log,json}
#
#   tools/gpu_long_context.sh BUNDLE
#
# Models: the decode and stream runs use configs/llama-3.2-1b.json (Llama-3.1's rope and
# 131072 positions; 32 KiB of bf16 KV a token, so 16 x 64k tokens = 32 GiB fit an H100 beside
# the weights; Llama-3.1-8B's 128 KiB a token would need 128 GiB, Qwen3-0.6B's context is 40960);
# the prefill uses configs/llama-3.1-8b.json (16 GiB of KV at 128k). NC_DECODE_CONFIG and
# NC_PREFILL_CONFIG override them.
# Bounded: sparse 120 s, each decode run 110 s, prefill 170 s for the three, stream 100 s
# (about 10 minutes with the unpacking); NC_PARTS picks parts (default "sparse decode prefill
# stream"), e.g. two device calls of "sparse decode" and "prefill stream".
# Environment: NC_PARTS, NC_DECODE_CONFIG, NC_PREFILL_CONFIG, NC_DECODE_CTX (65536),
# NC_DECODE_OUT (256 output tokens a request), NC_SPARSE_BUDGET (2048), NC_STREAM_TOKENS
# (1048576), NC_STREAM_WINDOW (4096).
set -uo pipefail
bundle=${1:?usage: tools/gpu_long_context.sh BUNDLE}
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
cd "$nc"
parts=" ${NC_PARTS:-sparse decode prefill stream} "
want() { [[ "$parts" == *" $1 "* ]]; }
decode_cfg=${NC_DECODE_CONFIG:-configs/llama-3.2-1b.json}
prefill_cfg=${NC_PREFILL_CONFIG:-configs/llama-3.1-8b.json}
ctx=${NC_DECODE_CTX:-65536}
budget=${NC_SPARSE_BUDGET:-2048}

# One request per prompt, random ids, no sharing: bench's shared-prefix workload with no system
# prompt. bench NAME TIMEOUT PROMPT_LEN OUTPUT_LEN REQUESTS [flags...]
bench() {
  local name=$1 t=$2 len=$3 outlen=$4 reqs=$5
  shift 5
  echo "== bench $name: $reqs x $len prompt ids, $outlen output tokens, $*"
  timeout "$t" bin/nanocascade bench --backend cuda --load-format dummy \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --groups "$reqs" \
    --question-len "$len" --output-len "$outlen" --no-prefix-cache --no-cascade \
    --max-num-seqs "$reqs" --max-num-batched-tokens 16384 "$@" \
    --json "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"
  cat "$out/$name.log"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  if want sparse; then
    echo "== nc_gpu_bench sparse"
    timeout 120 bin/nc_gpu_bench sparse > "$out/bench_sparse.md" 2>&1
    echo "exit $?"
    cat "$out/bench_sparse.md"
  fi
  if want decode; then
    len=$((ctx - ${NC_DECODE_OUT:-256} - 1))
    for mode in dense sparse; do
      extra=()
      [ "$mode" = sparse ] && extra=(--sparse-budget "$budget")
      bench "e2e_decode_$mode" 110 "$len" "${NC_DECODE_OUT:-256}" 16 --model "$decode_cfg" \
        --max-model-len "$ctx" "${extra[@]}"
    done
  fi
  if want prefill; then
    for k in 8 32 128; do
      n=$((k * 1024 - 2))
      bench "prefill_${k}k" 60 "$n" 1 1 --model "$prefill_cfg" --max-model-len 131072
    done
  fi
  if want stream; then
    # One request whose prompt is the stream: computed in chunks, the window freeing the pages
    # between the sinks and the last NC_STREAM_WINDOW tokens as it goes.
    bench stream 100 "$((${NC_STREAM_TOKENS:-1048576} - 64))" 32 1 --model "$decode_cfg" \
      --streaming-window "${NC_STREAM_WINDOW:-4096}"
  fi
  echo "== summary"
  python3 - "$out" "$prefill_cfg" <<'PY'
import json, os, sys
out, prefill_cfg = sys.argv[1], sys.argv[2]
def load(name):
    p = os.path.join(out, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
for mode in ("dense", "sparse"):
    j = load(f"e2e_decode_{mode}")
    if j:
        d = j.get("decode", {})
        wall, dev = d.get("wall_s", 0), d.get("device_s", 0)
        print(f"decode batch 16 at 64k, {mode}: {d.get('tokens', 0)} tokens in {d.get('steps', 0)} "
              f"decode-only steps, {d.get('tokens', 0) / wall if wall else 0:.0f} tok/s wall, "
              f"{1e3 * dev / max(d.get('steps', 1), 1):.3f} ms device a step, "
              f"{d.get('kv_tokens', 0) / max(d.get('steps', 1), 1):.0f} kv tokens a step")
cfg = json.load(open(prefill_cfg))
L, H, I = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd = cfg.get("head_dim", H // nh)
gemm_per_token = 2 * L * (H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I)
attn_per_n2 = 2 * L * nh * hd  # causal QK^T and PV: 4 n^2/2 hd flops per head and layer
pts = []
for k in (8, 32, 128):
    j = load(f"prefill_{k}k")
    if j and j.get("mean_ttft_s", 0) > 0:
        n, t = j["prompt_tokens"], j["mean_ttft_s"]
        pts.append((n, t))
        print(f"prefill {n} tokens: {t:.3f} s to the first token, {n / t:.0f} tok/s; "
              f"{gemm_per_token * n / t / 1e12:.1f} TFLOP/s of GEMMs + "
              f"{attn_per_n2 * n * n / t / 1e12:.1f} TFLOP/s of attention if each ran alone")
if len(pts) == 3:
    # t = c + a n + b n^2 through the three points (Cramer's rule).
    rows = [(1.0, n, n * n, t) for n, t in pts]
    def det(m):
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    A = [r[:3] for r in rows]
    D = det(A)
    sol = []
    for c in range(3):
        M = [list(r[:3]) for r in rows]
        for i in range(3):
            M[i][c] = rows[i][3]
        sol.append(det(M) / D)
    c0, a, b = sol
    n = pts[-1][0]
    print(f"prefill fit t(n) = {c0:.3f} s + {a * 1e6:.3f} us n + {b * 1e12:.4f} ps n^2: "
          f"GEMMs {gemm_per_token / a / 1e12 if a > 0 else 0:.1f} TFLOP/s, attention "
          f"{attn_per_n2 / b / 1e12 if b > 0 else 0:.1f} TFLOP/s; at {n} tokens attention is "
          f"{100 * b * n * n / pts[-1][1]:.0f}% of the time")
PY
  grep -h "kv pages: peak" "$out/stream.log" 2>/dev/null | sed 's/^/stream: /'
} 2>&1 | tee "$out/long_context.log"
