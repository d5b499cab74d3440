#!/usr/bin/env bash
# Stop 18, call 3a: llama.cpp's llama-batched-bench (built on the dev machine, sm_90a) and the random
# Qwen3-0.6B GGUF left in build-llamacpp/ (git-ignored: kept for the next call on this warm machine).
set -uo pipefail; SECONDS=0
mkdir -p build-llamacpp/src
xz -dc build-llama/llama-batched-bench.xz > build-llamacpp/llama-batched-bench && chmod +x build-llamacpp/llama-batched-bench
tar -C build-llamacpp/src -xJf build-llama/llama-src-min.tar.xz
python3 tools/write_random_gguf.py build-llamacpp/g.part --config configs/qwen3-0.6b.json --gguf-py build-llamacpp/src/llama.cpp/gguf-py --dtype f16 --seed 0 > build-llamacpp/gguf.log 2>&1 && mv build-llamacpp/g.part build-llamacpp/qwen3-0.6b-random-f16.gguf
echo "t=$SECONDS"; tail -2 build-llamacpp/gguf.log; ls -la build-llamacpp; nvidia-smi --query-gpu=name --format=csv
./build-llamacpp/llama-batched-bench --version 2>&1 | tail -2
