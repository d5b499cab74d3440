# Sourced by tools/gpu_peer_llamacpp.sh (the build on the GPU machine) and
# tools/llamacpp_prebuilt.sh (the build here): one configuration of llama.cpp for both.
#
# llamacpp_configure SRC BUILD: configures SRC into BUILD unless BUILD is configured already. Only
# what batched-bench needs: ggml (CPU + CUDA for sm_90a only), llama, common. The vector FA kernels
# for matching K/V types only (GGML_CUDA_FA_ALL_QUANTS off), no NCCL, no fatbin compression (a
# little less build time). ~280 build steps, ~145 of them CUDA.
llamacpp_configure() {
  [ -f "$2/build.ninja" ] ||
    cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DGGML_NATIVE=OFF \
      -DGGML_CUDA_FA=ON -DGGML_CUDA_FA_ALL_QUANTS=OFF -DGGML_CUDA_GRAPHS=ON \
      -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_COMPRESSION_MODE=none \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF
}
