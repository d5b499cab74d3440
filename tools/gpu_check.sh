#!/usr/bin/env bash
# The CUDA backend's GPU check, in two halves (see docs/gpu.md):
#
#   tools/gpu_check.sh pack [BUNDLE]   on a machine with nvcc (no GPU needed): builds nc_gpu_tests
#                                      and nc_gpu_bench (and the nanocascade CLI) for sm_90a
#                                      (NC_CUDA=ON) and packs them with
#                                      the shared libraries they need that a bare CUDA image lacks
#                                      (fmt, OpenBLAS, ...) into BUNDLE (default
#                                      build-cuda/gpu_bundle.tar.xz), with what the attention JIT
#                                      needs: our attention headers, FlashInfer's and its CCCL's,
#                                      and a JIT cache pre-built here (build-cuda/jit_cache, kept
#                                      between packs) for the keys the GPU tests and benchmarks
#                                      use (NC_JIT_KEYS), so the GPU run compiles nothing except
#                                      where a benchmark measures the compile.
#   tools/gpu_check.sh run [BUNDLE]    on the GPU machine: unpacks BUNDLE, runs the GPU tests and
#                                      the benchmarks, and writes logs to $OUT (or ./gpu_out).
#
# Why not build on the GPU machine: its image has nvcc and cmake but not the project's host
# dependencies (fmt, GoogleTest, OpenBLAS, PCRE2), and it cannot fetch them; building here costs
# no device time. Environment: NC_BUILD_DIR (build-cuda), NC_JOBS (2), NC_GTEST_FILTER (*),
# NC_BENCH (all | decode | gemm | variants | none), CMAKE_CUDA_ARCHITECTURES (90a), NC_JIT_KEYS
# (the keys to pre-build; default: jit_keys below).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

# The JIT keys of tests/gpu/test_cuda_attention_variants.cc, bench/gpu/variant_bench.cc and
# tests/gpu/test_cuda_model_variants.cc (the tiny Mistral and Gemma 2/3 fixtures; head_dim 96 is refused)
# (plain head_dim 64/128 is compiled in; the benchmark's compile-time key is left out on purpose),
# and of the FP8 KV cache's tests and benchmark (fp8 keys are never compiled in).
jit_keys() {
  local k
  for k in decode_hd128_w1_sc0 decode_hd128_w0_sc1 decode_hd128_w1_sc1 \
           prefill_causal_hd128_w1_sc0 prefill_causal_hd128_w0_sc1 prefill_causal_hd128_w1_sc1 \
           prefill_none_hd128_w0_sc1 \
           decode_hd256_w0_sc0 decode_hd256_w1_sc1 prefill_causal_hd256_w0_sc0 \
           prefill_causal_hd256_w1_sc1 decode_hd256_w0_sc1 prefill_none_hd256_w0_sc1 \
           decode_hd64_w1_sc0 prefill_causal_hd64_w1_sc0 prefill_causal_hd256_w0_sc1; do
    echo "${k}_bf16"
  done
  # tests/gpu/test_cuda_fp8_kv*.cc (hd64, hd128), nc_gpu_bench fp8kv (hd128).
  for k in decode_hd64_w0_sc0 prefill_causal_hd64_w0_sc0 prefill_none_hd64_w0_sc0 \
           decode_hd128_w0_sc0 prefill_causal_hd128_w0_sc0 prefill_none_hd128_w0_sc0; do
    echo "${k}_bf16_kvfp8"
  done
  # MLA's expanded form at DeepSeek's head dims (tests/gpu/test_cuda_mla_expanded.cc, the V2-Lite
  # model tests, nc_gpu_bench mla-forms, the DeepSeek configs' end-to-end runs).
  echo ragged_causal_hd192_vo128_w0_sc0_bf16
}
build=${NC_BUILD_DIR:-build-cuda}

case "$mode" in
  pack)
    bundle=${2:-$build/gpu_bundle.tar.xz}
    start=$(date +%s)
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNC_CUDA=ON -DNC_TESTS=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90a}" >/dev/null
    cmake --build "$build" -j "${NC_JOBS:-2}" --target nc_gpu_tests nc_gpu_bench nanocascade \
      nc_jit_prebuild
    echo "gpu_check: build took $(( $(date +%s) - start )) s"
    # The JIT objects for the GPU machine (sm_90a; the key names this machine's nvcc version,
    # which must match the GPU machine's for the entries to hit), two compiles at a time.
    start=$(date +%s)
    # NC_JIT_KEYS=none: none here; `run` then compiles the list on the GPU machine's cores.
    keys=${NC_JIT_KEYS:-$(jit_keys)}
    [ "$keys" = none ] && keys=
    mkdir -p "$build/jit_cache"
    printf '%s\n' $keys | xargs -r -P "${NC_JOBS:-2}" -n 1 env NC_JIT_ARCH=sm_90a \
      NC_JIT_CACHE="$build/jit_cache" "$build/bench/gpu/nc_jit_prebuild"
    echo "gpu_check: JIT cache took $(( $(date +%s) - start )) s"
    stage=$(mktemp -d)
    mkdir -p "$stage/nc/bin" "$stage/nc/lib"
    cp "$build/tests/gpu/nc_gpu_tests" "$build/bench/gpu/nc_gpu_bench" "$build/nanocascade" \
      "$build/bench/gpu/nc_jit_prebuild" "$stage/nc/bin/"
    strip "$stage/nc/bin/"*
    # Shared libraries outside glibc and the CUDA toolkit (the GPU machine has both).
    for bin in "$stage/nc/bin/"*; do
      ldd "$bin" | awk '/=>/ {print $3}' | while read -r lib; do
        case "$(basename "$lib")" in
          # libstdc++ and libgcc_s too: objects the JIT compiles there link against the GPU
          # machine's (newer) libstdc++, which an older bundled copy would shadow.
          libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda*|libcublas*) ;;
          libstdc++.so*|libgcc_s.so*) ;;
          *) [ -n "$lib" ] && cp -L "$lib" "$stage/nc/lib/" ;;
        esac
      done
    done
    # The JIT's headers (NC_JIT_INCLUDE_DIR layout, jit_compiler.h) and its pre-built cache.
    jit="$stage/nc/jit"
    mkdir -p "$jit/src/backend/cuda" "$jit/flashinfer/cccl/libcudacxx"
    # Every header of the folder: attn_*.cuh reach kernels.h, which includes others (moe_kernels.h).
    cp src/backend/cuda/*.cuh src/backend/cuda/*.h "$jit/src/backend/cuda/"
    fi_dir=third_party/flashinfer
    cp -rL "$fi_dir/include" "$jit/flashinfer/include"
    cp -rL "$fi_dir/cccl/libcudacxx/include" "$jit/flashinfer/cccl/libcudacxx/include"
    cp -rL "$fi_dir/cccl/cub" "$fi_dir/cccl/thrust" "$jit/flashinfer/cccl/"
    mkdir -p "$stage/nc/jit_cache"
    cp "$build"/jit_cache/*.so "$build"/jit_cache/*.key "$stage/nc/jit_cache/" 2>/dev/null || true
    # Fixtures are not packed: they travel with the checkout (a device call sends the working
    # tree, 64 MiB in all with the bundle), and `run` reads them from ./tests/fixtures.
    # The end-to-end run (tools/gpu_e2e.sh) needs the model configs and the Python scripts.
    cp -r configs "$stage/nc/configs"
    mkdir -p "$stage/nc/bench"
    cp bench/*.py "$stage/nc/bench/"
    mkdir -p "$(dirname "$bundle")"
    # xz -9e: the JIT cache's objects shrink to about half of the default level's bundle (15 MB
    # against 32 MB with every pre-built key), which keeps a call's working tree under 64 MiB.
    tar -C "$stage" -cf - nc | xz -9e -T"${NC_JOBS:-2}" > "$bundle"
    rm -rf "$stage"
    echo "gpu_check: packed $bundle ($(du -h "$bundle" | cut -f1))"
    ;;
  run)
    bundle=${2:-$build/gpu_bundle.tar.xz}
    out=${OUT:-gpu_out}
    mkdir -p "$out"
    dest=$(mktemp -d)
    tar -C "$dest" -xJf "$bundle"
    export LD_LIBRARY_PATH="$dest/nc/lib:${LD_LIBRARY_PATH:-}"
    {
      echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv || true
    } | tee "$out/device.txt"
    status=0
    # Fixtures travel in the bundle; the binary looks for them where it was built, so point it
    # at the unpacked copy.
    fixtures="$dest/nc/fixtures"
    [ -d "$fixtures" ] || fixtures="$PWD/tests/fixtures"
    export NC_FIXTURES_DIR_OVERRIDE="$fixtures"
    # The attention JIT: the bundle's headers and pre-built objects (a missing key compiles).
    export NC_JIT_INCLUDE_DIR="$dest/nc/jit" NC_JIT_CACHE="$dest/nc/jit_cache"
    # The keys the bundle lacks, compiled here in parallel (a hit costs nothing).
    start=$(date +%s)
    jit_keys | xargs -r -P "$(nproc)" -n 1 "$dest/nc/bin/nc_jit_prebuild" 2>&1 | grep -c compiled \
      | sed 's/^/gpu_check: JIT keys compiled or found: /' || true
    echo "gpu_check: JIT pre-build on this machine took $(( $(date +%s) - start )) s"
    "$dest/nc/bin/nc_gpu_tests" --gtest_filter="${NC_GTEST_FILTER:-*}" \
      --gtest_output="xml:$out/gpu_tests.xml" 2>&1 | tee "$out/gpu_tests.log" | grep -E "^\[ *(OK|FAILED|PASSED|RUN) *\]|Failure|error|rel|Expected|Which|^  " | tail -200 \
      || true
    grep -q "^\[  PASSED  \]" "$out/gpu_tests.log" && ! grep -q "^\[  FAILED  \]" "$out/gpu_tests.log" || status=1
    if [ "${NC_BENCH:-all}" != none ]; then
      "$dest/nc/bin/nc_gpu_bench" "${NC_BENCH:-all}" 2>&1 | tee "$out/gpu_bench.md" || status=1
    fi
    tail -3 "$out/gpu_tests.log"
    echo "gpu_check: status $status"
    exit $status
    ;;
  *)
    echo "usage: tools/gpu_check.sh pack [BUNDLE] | run [BUNDLE]" >&2
    exit 2
    ;;
esac
