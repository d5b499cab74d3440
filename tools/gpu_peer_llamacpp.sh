#!/usr/bin/env bash
# llama.cpp peer benchmark on the GPU machine (docs/gpu.md, "llama.cpp peer"): builds
# llama-batched-bench with CUDA from the carried third_party/llama.cpp (tools/fetch_llamacpp.sh),
# writes a Qwen3-0.6B-shaped GGUF with random f16 weights (tools/write_random_gguf.py) and runs
# llama-batched-bench with flash attention, every layer on the GPU, for fixed-length batches:
# each of B sequences gets a prompt of PP random token ids, then TG decode steps of B tokens.
#
#   bash tools/gpu_peer_llamacpp.sh        (from the repo root; carry third_party/llama.cpp)
#
# Writes to $OUT (or ./gpu_out): device.txt, build.log, gguf.log, check.log (a short verbose run:
# devices and buffers), bench.jsonl (one JSON line per point), bench.log (llama.cpp's log),
# summary.md (the table). Prints the build time and a summary.
#
# Environment:
#   LLAMA_BENCH_BIN    a prebuilt llama-batched-bench: skip the build
#   LLAMA_SRC_TAR      the pruned tree as a .tar.xz of llama.cpp/ (2.3 MB) instead of the
#                      carried folder (tar -C third_party -cJf llama.cpp.tar.xz llama.cpp)
#   LLAMA_BUILD_DIR    build folder (default build-llamacpp, git-ignored and not carried, so a
#                      second call on the same warm machine reuses it: an unfinished build resumes)
#   LLAMA_BUILD_LIMIT  seconds the build may take before the script gives up (default 470)
#   LLAMA_NPP / LLAMA_NTG / LLAMA_NPL   prompt length, decode steps, batch sizes
#                      (default 512 / 512 / 1,64,256: 256 sequences of 512+512 tokens, like
#                      nano-vLLM's 256 requests of 100..1024 + 100..1024 tokens, at fixed lengths)
#   LLAMA_B / LLAMA_UB logical / physical batch (default 2048 / 512, llama.cpp's defaults)
#   LLAMA_EXTRA_UB     if set (e.g. 2048) and time is left, a second run at the largest batch
#                      size with this physical batch (prefill in larger GEMMs)
#   LLAMA_DTYPE        weights: f16 (default) or bf16
#   LLAMA_GGUF         an existing GGUF to bench instead of writing the random Qwen3-0.6B one
#
# The KV cache is per sequence (not unified): -c = max(B) * (PP + TG), so each sequence gets
# PP + TG cells; f16 K/V (llama.cpp's default), ~112 KiB per token for this shape, 30 GB at
# B = 256. llama.cpp's CUDA graphs are on (its default).
#
# nanocascade on the same shape and fixed lengths (same token counts per point; nanocascade also
# samples every token, temperature 0.6, on the GPU): the shared-prefix workload with an empty
# system prompt is exactly "B requests of PP random ids, TG output tokens each, sent at once":
#
#   nanocascade bench --backend cuda --load-format dummy --model configs/qwen3-0.6b.json \
#     --max-model-len 4096 --max-num-batched-tokens 16384 --max-num-seqs 512 --no-prefix-cache \
#     --no-cascade --workload shared-prefix --system-len 0 --prompts-per-group 1 \
#     --question-len 512 --output-len 512 --groups 256        (and --groups 1, --groups 64)
#
# Compare its "total tok/s" with llama.cpp's S (= B*(PP+TG) / (T_PP+T_TG)), its decode-only
# "ms wall per step" with 1000*T_TG/TG, and its prefill steps x "ms wall per step" with T_PP
# (llama.cpp prefills all B prompts before the first decode step). nanocascade produces the first output
# token in the prefill step, so it runs TG-1 decode steps where llama.cpp runs TG.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
SECONDS=0
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=third_party/llama.cpp
build=${LLAMA_BUILD_DIR:-build-llamacpp}
if [ -n "${LLAMA_SRC_TAR:-}" ]; then  # the pruned tree carried as one .tar.xz instead
  mkdir -p "$build/src" && tar -C "$build/src" -xJf "$LLAMA_SRC_TAR" && src=$build/src/llama.cpp
fi
npp=${LLAMA_NPP:-512}
ntg=${LLAMA_NTG:-512}
npl=${LLAMA_NPL:-1,64,256}
dtype=${LLAMA_DTYPE:-f16}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  echo "cpus: $(nproc)"
  nvcc --version 2>&1 | tail -1
  cmake --version | head -1
  cat "$src/NC_SOURCE" 2>/dev/null
} | tee "$out/device.txt"

# --- model (written in the background while llama.cpp builds) ------------------------------
gguf=${LLAMA_GGUF:-$build/qwen3-0.6b-random-$dtype.gguf}
mkdir -p "$build"
gguf_pid=
if [ ! -s "$gguf" ]; then
  # Written under another name first, so an interrupted call never leaves a truncated GGUF behind.
  (python3 tools/write_random_gguf.py "$gguf.part" --config configs/qwen3-0.6b.json \
     --gguf-py "$src/gguf-py" \
     --dtype "$dtype" --seed 0 && mv "$gguf.part" "$gguf") > "$out/gguf.log" 2>&1 &
  gguf_pid=$!
fi

# --- build ---------------------------------------------------------------------------------
bin=${LLAMA_BENCH_BIN:-}
if [ -n "$bin" ]; then
  echo "peer: using prebuilt $bin (no build)"
else
  if [ ! -f "$src/CMakeLists.txt" ]; then
    echo "peer: $src is missing: run tools/fetch_llamacpp.sh here and carry $src" >&2
    exit 2
  fi
  bin=$build/bin/llama-batched-bench
  start=$SECONDS
  {
    source tools/llamacpp_configure.sh
    llamacpp_configure "$src" "$build"
    timeout "${LLAMA_BUILD_LIMIT:-470}" cmake --build "$build" -j "$(nproc)" \
      --target llama-batched-bench
  } > "$out/build.log" 2>&1
  rc=$?
  echo "peer: build took $((SECONDS - start)) s (rc $rc; $(grep -c '\.cu\.o' "$out/build.log") CUDA objects compiled in this call)"
  if [ $rc -ne 0 ] || [ ! -x "$bin" ]; then
    tail -30 "$out/build.log"
    echo "peer: build did not finish; rerun the same command on the warm machine: it resumes" \
         "in $build"
    [ -z "$gguf_pid" ] || wait "$gguf_pid"
    exit 3
  fi
fi

# --- bench ---------------------------------------------------------------------------------
if [ -n "$gguf_pid" ]; then
  wait "$gguf_pid" || { cat "$out/gguf.log"; echo "peer: writing the GGUF failed"; exit 4; }
  cat "$out/gguf.log"
fi
max_pl=$(tr ',' '\n' <<< "$npl" | sort -n | tail -1)
ctx=$((max_pl * (npp + ntg)))
# llama.cpp logs through an asynchronous queue that is not flushed at exit, so the last result
# line is sometimes lost (seen here on the CPU build in 2 of 6 runs). Each run therefore ends
# with one more B = 1 point, which both gives that queue time and shows B = 1 once warm.
run_bench() {  # $1 = physical batch, $2 = batch sizes, $3 = tag
  local pls="$2,1"
  echo "== llama-batched-bench -npp $npp -ntg $ntg -npl $pls -c $ctx -b ${LLAMA_B:-2048} -ub $1 -fa on"
  "$bin" -m "$gguf" -ngl 99 -fa on -fit off -c "$ctx" -b "${LLAMA_B:-2048}" -ub "$1" \
    -npp "$npp" -ntg "$ntg" -npl "$pls" --output-format jsonl \
    > "$out/bench$3.jsonl" 2> "$out/bench$3.log"
  local rc=$?
  [ $rc -eq 0 ] || { tail -20 "$out/bench$3.log"; echo "peer: bench failed (rc $rc)"; }
  return $rc
}
summarize() {  # $1 = jsonl file
  python3 - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| PP | TG | B | T_PP s | S_PP tok/s | T_TG s | S_TG tok/s | ms/decode step | T s | S tok/s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for i, r in enumerate(rows):
    print(f"| {r['pp']} | {r['tg']} | {r['pl']} | {r['t_pp']:.3f} | {r['speed_pp']:.0f} | "
          f"{r['t_tg']:.3f} | {r['speed_tg']:.0f} | {1e3 * r['t_tg'] / r['tg']:.2f} | "
          f"{r['t']:.3f} | {r['speed']:.0f} |" + (" (repeat)" if i and r['pl'] == 1 else ""))
if rows:
    r = rows[0]
    print(f"\nn_batch {r['n_batch']}, n_ubatch {r['n_ubatch']}, flash_attn {r['flash_attn']}, "
          f"n_gpu_layers {r['n_gpu_layers']}, n_kv_max {r['n_kv_max']}")
EOF
}

# A short verbose run first: where llama.cpp put the layers and the KV cache, and whether flash
# attention is on (the timed runs below stay at the default log level).
echo "== check run (-v): devices, buffers, flash attention"
"$bin" -m "$gguf" -ngl 99 -fa on -fit off -c 256 -npp 16 -ntg 4 -npl 1 -v \
  > "$out/check.jsonl" 2> "$out/check.log" || { tail -30 "$out/check.log"; echo "peer: check run failed"; exit 5; }
grep -o "assigned to device [A-Za-z0-9_]*" "$out/check.log" | sort | uniq -c
grep -E "ggml_cuda_init|Device [0-9]|model buffer size|KV buffer size|compute buffer size|flash_attn|graph splits|splits =" \
  "$out/check.log" | grep -v "~llama_context" | sed -E 's/^[0-9.]+ [IWED] //' | head -16

status=0
run_bench "${LLAMA_UB:-512}" "$npl" "" || status=6
summarize "$out/bench.jsonl" | tee "$out/summary.md"
if [ -n "${LLAMA_EXTRA_UB:-}" ] && [ $status -eq 0 ] && [ $SECONDS -lt 480 ]; then
  run_bench "$LLAMA_EXTRA_UB" "$max_pl" "_ub$LLAMA_EXTRA_UB" &&
    { echo; echo "### -ub $LLAMA_EXTRA_UB"; summarize "$out/bench_ub$LLAMA_EXTRA_UB.jsonl"; } |
    tee -a "$out/summary.md"
fi
echo "peer: total $SECONDS s, status $status"
exit $status
