#!/usr/bin/env bash
# llama.cpp's llama-batched-bench built here and carried to the GPU machine, instead of built there
# (tools/gpu_peer_llamacpp.sh's build takes about 290 s of device time). docs/gpu.md, "llama.cpp peer".
#
#   tools/llamacpp_prebuilt.sh pack    (here, once: ~45 min on 2 cores, needs third_party/llama.cpp
#                                      from tools/fetch_llamacpp.sh) -> build-llama/
#   tools/llamacpp_prebuilt.sh stash   (on the GPU machine, carry ["build-llama"]) -> build-llamacpp/
#
# pack builds llama-batched-bench for sm_90a with gpu_peer_llamacpp.sh's options
# (llamacpp_configure.sh) in
# build-llamacpp-host/, strips it and compresses it (434 MB -> 27 MB with xz -9e), with gguf-py
# beside it (0.1 MB). The repository (~34 MB) plus that leaves no room for the engine's bundle
# (~16 MB) under the device tool's 64 MiB, so the peer takes two calls on one warm machine: first
# `stash` alone (unpacks the binary and writes the random Qwen3-0.6B GGUF into build-llamacpp/,
# git-ignored and so kept for the next call on that machine, ~15 s), then, at once, the call with
# the bundle that runs
#   LLAMA_BENCH_BIN=$PWD/build-llamacpp/llama-batched-bench \
#   LLAMA_GGUF=$PWD/build-llamacpp/qwen3-0.6b-random-f16.gguf bash tools/gpu_peer_llamacpp.sh
# beside nanocascade (the machine goes back 30 s after a call).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  pack)
    src=third_party/llama.cpp host=build-llamacpp-host
    [ -f "$src/CMakeLists.txt" ] || { echo "llamacpp_prebuilt: run tools/fetch_llamacpp.sh first" >&2; exit 2; }
    source tools/llamacpp_configure.sh
    llamacpp_configure "$src" "$host" > /dev/null
    cmake --build "$host" -j "$(nproc)" --target llama-batched-bench
    mkdir -p build-llama
    strip -o build-llama/llama-batched-bench "$host/bin/llama-batched-bench"
    xz -9e -T0 -f build-llama/llama-batched-bench
    tar -C third_party -cJf build-llama/llama-src-min.tar.xz llama.cpp/gguf-py llama.cpp/NC_SOURCE
    cp tools/llamacpp_prebuilt.sh build-llama/
    ls -la build-llama
    ;;
  stash)
    mkdir -p build-llamacpp/src
    xz -dc build-llama/llama-batched-bench.xz > build-llamacpp/llama-batched-bench
    chmod +x build-llamacpp/llama-batched-bench
    tar -C build-llamacpp/src -xJf build-llama/llama-src-min.tar.xz
    gguf=build-llamacpp/qwen3-0.6b-random-f16.gguf
    [ -s "$gguf" ] || {
      python3 tools/write_random_gguf.py "$gguf.part" --config configs/qwen3-0.6b.json \
        --gguf-py build-llamacpp/src/llama.cpp/gguf-py --dtype f16 --seed 0 && mv "$gguf.part" "$gguf"; }
    ls -la build-llamacpp
    ./build-llamacpp/llama-batched-bench --version 2>&1 | tail -2
    ;;
  *)
    echo "usage: tools/llamacpp_prebuilt.sh pack|stash" >&2
    exit 2
    ;;
esac
