#!/usr/bin/env bash
# CPU peer benchmark (issue #20, docs/benchmarks.md "CPU"): llama.cpp's CPU backend and
# nanocascade's CPU backend on the same GGUF, the same thread count and the same fixed shapes,
# in the same run; writes a markdown table for docs/benchmarks.md.
#
#   bash tools/cpu_peer_llamacpp.sh            (from the repo root, after `make build`)
#   SMOKE=1 bash tools/cpu_peer_llamacpp.sh    (a few seconds: tiny shapes, checks the plumbing)
#
# llama.cpp: llama-batched-bench built from tools/fetch_llamacpp.sh's tree, CPU only, without
# AMX (its AMX path dies with an illegal instruction in some VMs), native vector code otherwise.
# Each of B sequences gets a prompt of NPP random ids, then NTG decode steps of B tokens.
# nanocascade: `bench --workload shared-prefix --system-len 0 --prompts-per-group 1
# --groups B --question-len NPP --output-len NTG` with the prefix cache and cascade off, which
# is "B requests of NPP random ids, NTG output tokens each, sent at once"; its first output token
# comes from the prefill step, so it runs NTG - 1 decode steps where llama.cpp runs NTG. Decode
# tok/s = tokens of the decode-only steps / their wall time; prompt tok/s = tokens of the steps
# with prefill / their wall time (llama.cpp: S_TG and S_PP).
#
# Run it on a quiet machine: anything else running changes both engines' numbers. The load
# average at the start and the end goes into the table's header line.
#
# nanocascade's matmul path follows the environment (src/backend/cpu/cpu_matmul.h):
# NC_CPU_ACTIVATIONS=int8|f32 (unset: int8), NC_CPU_ISA; the header line names both. To compare
# the modes, run the script once per mode with OUT set apart, alternating.
#
# Environment (defaults in brackets):
#   THREADS [2]  NPP [128]  NTG [64]  NPL [1,8,32]
#   MODEL [models/SmolLM2-135M-Instruct.Q4_1.gguf]   NC_BIN [build/nanocascade]
#   LLAMA_SRC [/work/llama.cpp if it exists, else third_party/llama.cpp]
#   LLAMA_BUILD_DIR [$LLAMA_SRC/build-cpu]   LLAMA_BENCH_BIN: a prebuilt llama-batched-bench
#   OUT [build/cpu_peer_out]: build.log, llama.jsonl, llama.log, nc_B<B>.json/.log, table.md
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
threads=${THREADS:-2}
npp=${NPP:-128}
ntg=${NTG:-64}
npl=${NPL:-1,8,32}
if [ -n "${SMOKE:-}" ]; then npp=16; ntg=4; npl=1,2; fi
model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
nc_bin=${NC_BIN:-build/nanocascade}
src=${LLAMA_SRC:-}
if [ -z "$src" ]; then
  if [ -f /work/llama.cpp/CMakeLists.txt ]; then src=/work/llama.cpp; else src=third_party/llama.cpp; fi
fi
build=${LLAMA_BUILD_DIR:-$src/build-cpu}
out=${OUT:-build/cpu_peer_out}
mkdir -p "$out"
load0=$(cut -d' ' -f1 /proc/loadavg)
for f in "$model" "$nc_bin"; do
  [ -e "$f" ] || { echo "cpu_peer: $f is missing (make build; tools/setup.sh)" >&2; exit 2; }
done

# --- llama.cpp -----------------------------------------------------------------------------
bin=${LLAMA_BENCH_BIN:-$build/bin/llama-batched-bench}
if [ ! -x "$bin" ]; then
  [ -f "$src/CMakeLists.txt" ] || { echo "cpu_peer: no llama.cpp tree at $src (tools/fetch_llamacpp.sh)" >&2; exit 2; }
  echo "cpu_peer: building llama-batched-bench (CPU, no AMX) in $build"
  {
    [ -f "$build/build.ninja" ] ||
      cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=OFF -DGGML_NATIVE=ON \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF
    cmake --build "$build" -j "$(nproc)" --target llama-batched-bench
  } > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; echo "cpu_peer: build failed" >&2; exit 3; }
fi
max_pl=$(tr ',' '\n' <<< "$npl" | sort -n | tail -1)
ctx=$((max_pl * (npp + ntg)))
# The trailing B = 1 point gives llama.cpp's asynchronous log queue time to flush the last real
# point (tools/gpu_peer_llamacpp.sh says why); it is dropped from the table.
echo "cpu_peer: llama-batched-bench -t $threads -npp $npp -ntg $ntg -npl $npl"
"$bin" -m "$model" -t "$threads" -tb "$threads" -c "$ctx" -b 2048 -ub 512 \
  -npp "$npp" -ntg "$ntg" -npl "$npl,1" --output-format jsonl \
  > "$out/llama.jsonl" 2> "$out/llama.log" || { tail -20 "$out/llama.log"; echo "cpu_peer: llama.cpp failed" >&2; exit 4; }

# --- nanocascade ---------------------------------------------------------------------------
for b in $(tr ',' ' ' <<< "$npl"); do
  echo "cpu_peer: nanocascade bench B=$b"
  NC_NUM_THREADS=$threads "$nc_bin" bench --model "$model" --backend cpu \
    --workload shared-prefix --system-len 0 --prompts-per-group 1 --groups "$b" \
    --question-len "$npp" --output-len "$ntg" --no-prefix-cache --no-cascade \
    --max-num-seqs "$((b > 256 ? b : 256))" --max-num-batched-tokens "$((b * npp > 2048 ? b * npp : 2048))" \
    --max-model-len "$((npp + ntg + 16))" --json "$out/nc_B$b.json" \
    > "$out/nc_B$b.log" 2>&1 || { tail -20 "$out/nc_B$b.log"; echo "cpu_peer: nanocascade failed" >&2; exit 5; }
done

# --- table ---------------------------------------------------------------------------------
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mode="activations ${NC_CPU_ACTIVATIONS:-int8 (default)}, ISA ${NC_CPU_ISA:-best}"
load="load average $load0 at the start, $(cut -d' ' -f1 /proc/loadavg) at the end"
python3 - "$out" "$npl" "$threads" "$npp" "$ntg" "$cpu" "$model" "$mode; $load" <<'EOF' | tee "$out/table.md"
import datetime, json, sys
out, npl, threads, npp, ntg, cpu, model, mode = sys.argv[1:]
llama = {}
for line in open(f"{out}/llama.jsonl"):
    if line.startswith("{"):
        r = json.loads(line)
        llama.setdefault(r["pl"], r)  # the first point of each B (the trailing B = 1 repeats)

def kind(j, name, field):  # the stats JSON: {"decode": {...}} or flat "decode_..." keys
    return j[name][field] if isinstance(j.get(name), dict) else j[f"{name}_{field}"]

def rate(j, name):
    wall = kind(j, name, "wall_s")
    return kind(j, name, "tokens") / wall if wall > 0 else float("nan")

print(f"CPU: {cpu}; {threads} threads each; {model}; prompt {npp}, {ntg} generated; "
      f"{datetime.date.today().isoformat()}; nanocascade {mode}\n")
print("| B | llama.cpp decode tok/s | nanocascade decode tok/s | ratio | "
      "llama.cpp prompt tok/s | nanocascade prompt tok/s | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for b in [int(x) for x in npl.split(",")]:
    j = json.load(open(f"{out}/nc_B{b}.json"))
    l = llama.get(b)
    ld, lp = (l["speed_tg"], l["speed_pp"]) if l else (float("nan"), float("nan"))
    nd, np_ = rate(j, "decode"), rate(j, "prefill")
    print(f"| {b} | {ld:.1f} | {nd:.1f} | {nd / ld:.2f}x | {lp:.1f} | {np_:.1f} | {np_ / lp:.2f}x |")
EOF
