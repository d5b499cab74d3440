#!/usr/bin/env bash
# Issue #21's GPU runs, from a bundle made by `tools/gpu_check.sh pack`, on a machine with 2, 4
# or 8 GPUs (the multi-GPU kinds; one call). NCCL comes from the machine's nvidia-nccl-cu13
# wheel (NC_NCCL_LIBRARY; NVLink multicast stays off: NCCL_NVLS_ENABLE=0). Parts (NC_PARTS,
# default all), raw files under $OUT (or ./gpu_out), console in tp.log:
#
#   ceilings  bench/gpu_ceilings.py (copy bandwidth, bf16 GEMM rate of GPU 0)  -> ceilings.json
#   busbw     bench/nccl_busbw.py: NCCL's all-reduce bus bandwidth at 2 and 4 ranks, at the
#             engine's per-layer message sizes and 1 GiB                          -> busbw.jsonl
#   tests     the NCCL group-of-one tests (CudaNccl.*)                           -> nccl_tests.txt
#   8b        the Llama-3-8B shape (random weights) at --tensor-parallel-size 1, 2, 4: decode
#             steps at batch 1 and 64 (512 + 256 tokens a request) and nano-vLLM's workload
#                                                                     -> l8b_tp{N}_{b1,b64,nano}.*
#   70b       the Llama-3-70B shape (141 GB of bf16 weights: not one GPU) at size 4 (or 2 on
#             H200s), batch 64                                                  -> l70b_tp*.*
#   nodes     two "machines" on one host: --nnodes 2, node 1 on GPU 1 (CUDA_VISIBLE_DEVICES),
#             bootstrapped over TCP at 127.0.0.1, against size 2 in one command -> nodes_*.log
#
#   tools/gpu_tp.sh BUNDLE
set -uo pipefail
bundle=${1:?usage: tools/gpu_tp.sh BUNDLE}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-gpu_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
source "$(dirname "$0")/gpu_bundle.sh"
gpu_unpack "$bundle" || exit 1
export NCCL_NVLS_ENABLE=0
export NC_NCCL_LIBRARY=${NC_NCCL_LIBRARY:-$(python3 -c \
  "import nvidia.nccl as n; print(list(n.__path__)[0])")/lib/libnccl.so.2}
parts=" ${NC_PARTS:-ceilings busbw tests 8b 70b nodes} "
want() { [[ "$parts" == *" $1 "* ]]; }
gpus=$(nvidia-smi -L | wc -l)

bench() {  # bench NAME [flags...]: one `nanocascade bench` run, console and JSON kept
  local name=$1
  shift
  echo "== $name: $*"
  timeout 150 "$nc/bin/nanocascade" bench --backend cuda --load-format dummy "$@" \
    --json "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"
  grep -h "throughput\|decode-only\|memory:\|error" "$out/$name.log"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ), $gpus GPUs"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nvidia-smi topo -m
  if want ceilings; then
    timeout 100 python3 "$repo/bench/gpu_ceilings.py" > "$out/ceilings.json" 2>&1
    cat "$out/ceilings.json"
  fi
  if want busbw; then
    timeout 200 python3 "$repo/bench/nccl_busbw.py" --ranks 2 4 > "$out/busbw.jsonl" 2>&1
    cat "$out/busbw.jsonl"
  fi
  if want tests; then
    NC_FIXTURES_DIR_OVERRIDE="$repo/tests/fixtures" timeout 120 "$nc/bin/nc_gpu_tests" \
      --gtest_filter='CudaNccl*' > "$out/nccl_tests.txt" 2>&1
    echo "nccl tests exit $?"; tail -3 "$out/nccl_tests.txt"
  fi
  L8=(--model "$nc/configs/llama-3-8b.json" --max-model-len 4096 --no-prefix-cache --no-cascade
      --workload shared-prefix --system-len 0 --prompts-per-group 1 --question-len 512
      --output-len 256)
  if want 8b; then
    for tp in 1 2 4; do
      [ "$tp" -le "$gpus" ] || continue
      bench "l8b_tp${tp}_b1" "${L8[@]}" --groups 1 --tensor-parallel-size "$tp"
      bench "l8b_tp${tp}_b64" "${L8[@]}" --groups 64 --tensor-parallel-size "$tp"
      bench "l8b_tp${tp}_nano" --model "$nc/configs/llama-3-8b.json" --workload nano-vllm \
        --tensor-parallel-size "$tp"
    done
  fi
  if want 70b; then
    tp=4; [ "$gpus" -ge 4 ] || tp=2
    bench "l70b_tp${tp}_b64" --model "$nc/configs/llama-3-70b.json" --max-model-len 4096 \
      --no-prefix-cache --no-cascade --workload shared-prefix --system-len 0 \
      --prompts-per-group 1 --question-len 512 --output-len 256 --groups 64 \
      --tensor-parallel-size "$tp"
  fi
  if want nodes; then
    addr=127.0.0.1:29577
    N=("${L8[@]}" --groups 16 --tensor-parallel-size 2 --nnodes 2 --dist-init-addr "$addr")
    CUDA_VISIBLE_DEVICES=1 timeout 150 "$nc/bin/nanocascade" bench --backend cuda \
      --load-format dummy "${N[@]}" --node-rank 1 > "$out/nodes_node1.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=0 bench nodes_node0 "${N[@]}"
    wait
    echo "node 1 log:"; tail -3 "$out/nodes_node1.log"
    bench nodes_single "${L8[@]}" --groups 16 --tensor-parallel-size 2
  fi
} 2>&1 | tee "$out/tp.log"
gpu_pack_out "$out" tp tp.log
