#!/usr/bin/env bash
# Fetches llama.cpp's sources for the peer benchmark (tools/gpu_peer_llamacpp.sh, docs/gpu.md,
# "llama.cpp peer") into DEST (default third_party/llama.cpp, git-ignored; never committed).
#
#   tools/fetch_llamacpp.sh [DEST]
#
# PyPI is the only registry reachable from the project's machines, and llama-cpp-python's sdist
# vendors a full llama.cpp tree (vendor/llama.cpp). That tree is pruned to what building
# `llama-batched-bench` with the CPU and CUDA backends needs, plus gguf-py (which
# tools/write_random_gguf.py imports), so that it can be carried to the GPU machine (limit 64 MiB
# per call): no models/ (vocab files), docs, tests, examples, other backends, web UI or CI files.
# tools/CMakeLists.txt is replaced by one that adds batched-bench only (the original adds every
# tool, whose folders are dropped here).
#
# Safe to re-run: does nothing when DEST already holds this pin. LLAMACPP_PY_PIN overrides the pin.
set -euo pipefail
cd "$(dirname "$0")/.."

PIN=${LLAMACPP_PY_PIN:-0.3.36}   # llama-cpp-python release; its vendor/llama.cpp is llama.cpp 0c1e570
dest=${1:-third_party/llama.cpp}
stamp="llama-cpp-python==$PIN (pruned by tools/fetch_llamacpp.sh)"

if [ -f "$dest/NC_SOURCE" ] && [ "$(cat "$dest/NC_SOURCE")" = "$stamp" ]; then
  echo "fetch_llamacpp: $dest already holds $stamp"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_llamacpp: downloading the llama-cpp-python $PIN sdist"
python3 -m pip download -q --no-binary :all: --no-deps -d "$tmp" "llama-cpp-python==$PIN"
sdist=$(ls "$tmp"/llama_cpp_python-*.tar.gz)
top=$(basename "$sdist" .tar.gz)   # the sdist's top folder, e.g. llama_cpp_python-0.3.36

rm -rf "$dest"
mkdir -p "$dest"
# Only the parts kept below are unpacked (the sdist is ~75 MB compressed, mostly models/ and docs/).
keep=(CMakeLists.txt LICENSE cmake include src common ggml vendor gguf-py licenses
      tools/batched-bench)
tar -xzf "$sdist" -C "$dest" --strip-components=3 \
  "${keep[@]/#/$top/vendor/llama.cpp/}"

# ggml: only the CPU, BLAS and CUDA backends (each other backend is added only when its
# GGML_<NAME> option is on, so its folder may be missing).
for d in "$dest"/ggml/src/ggml-*/; do
  case "$(basename "$d")" in
    ggml-cpu|ggml-cuda|ggml-blas) ;;
    *) rm -rf "$d" ;;
  esac
done
rm -rf "$dest"/gguf-py/tests "$dest"/gguf-py/examples
find "$dest" \( -name '.git*' -o -name '__pycache__' -o -name '*.pyc' \) -prune -exec rm -rf {} +

cat > "$dest/tools/CMakeLists.txt" <<'EOF'
# Replaced by nanocascade's tools/fetch_llamacpp.sh: the pruned tree keeps batched-bench only.
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
EOF
echo "$stamp" > "$dest/NC_SOURCE"

echo "fetch_llamacpp: $dest: $(du -sh "$dest" | cut -f1), $(find "$dest" -type f | wc -l) files"
