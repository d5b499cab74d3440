# The CUDA backend (FlashInfer + cuBLASLt), included by the top-level CMakeLists when NC_CUDA=ON.
#
# Layout: the device code (src/backend/cuda/*.cu) builds into the static library nc_cuda_kernels,
# which only includes FlashInfer and CUDA headers; the host side (src/backend/cuda/*.cc: the
# Backend class, memory, cuBLASLt, plans) is compiled into nanocascade_core itself, so core's
# users get make_cuda_backend() without a circular static-library dependency.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # sm_90a: FlashInfer's Hopper paths (wgmma) need the arch-specific target.
  set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

set(NC_FLASHINFER_DIR "${CMAKE_SOURCE_DIR}/third_party/flashinfer" CACHE PATH
    "FlashInfer headers (include/) and its bundled CCCL (cccl/); tools/setup.sh fetches them")
if(NOT EXISTS "${NC_FLASHINFER_DIR}/include/flashinfer/attention/prefill.cuh")
  message(FATAL_ERROR "FlashInfer headers not found under NC_FLASHINFER_DIR=${NC_FLASHINFER_DIR}; "
                      "run tools/setup.sh (NC_WITH_FLASHINFER=1) or set NC_FLASHINFER_DIR")
endif()

# CMake 3.25 does not know nvcc 13's C++20 flag: tell it.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB NC_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu)
add_library(nc_cuda_kernels STATIC ${NC_CUDA_KERNEL_SOURCES})
# FlashInfer needs a newer CCCL (cuda::fast_mod_div) than the toolkit's: its bundled copy must be
# searched BEFORE the toolkit's own include directory, hence BEFORE and -I (not -isystem, which
# nvcc would place after the toolkit's).
target_include_directories(nc_cuda_kernels BEFORE PRIVATE
  ${NC_FLASHINFER_DIR}/cccl/libcudacxx/include
  ${NC_FLASHINFER_DIR}/cccl/cub
  ${NC_FLASHINFER_DIR}/cccl/thrust
  ${NC_FLASHINFER_DIR}/include)
# CUTLASS/CuTe (from FlashInfer's wheel) for the Hopper prefill (attn_prefill_sm90.cu) only.
if(NOT EXISTS "${NC_FLASHINFER_DIR}/cutlass/include/cute/tensor.hpp")
  message(FATAL_ERROR "CUTLASS headers not found under ${NC_FLASHINFER_DIR}/cutlass; "
                      "run tools/setup.sh (it extracts them from FlashInfer's wheel)")
endif()
set_source_files_properties(${CMAKE_SOURCE_DIR}/src/backend/cuda/attn_prefill_sm90.cu PROPERTIES
  INCLUDE_DIRECTORIES "${NC_FLASHINFER_DIR}/cutlass/include;${NC_FLASHINFER_DIR}/cutlass/tools/util/include"
  # CUTLASS's own headers: deprecated implicit `this` capture (sm100 collectives it includes) and
  # a deprecated cute::copy_if overload that FlashInfer's epilogue calls.
  COMPILE_OPTIONS "-diag-suppress=2908,1444")
target_include_directories(nc_cuda_kernels PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_options(nc_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --expt-extended-lambda
                            -Xcompiler=-Wno-unused-parameter>)
# FlashInfer's host code needs the bf16/fp8 types; keep its PDL/arch checks consistent.
target_compile_definitions(nc_cuda_kernels PRIVATE FLASHINFER_ENABLE_BF16 FLASHINFER_ENABLE_F16)
set_target_properties(nc_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                                                 CUDA_SEPARABLE_COMPILATION OFF)
target_link_libraries(nc_cuda_kernels PUBLIC CUDA::cudart)

file(GLOB NC_CUDA_HOST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cc)
target_sources(nanocascade_core PRIVATE ${NC_CUDA_HOST_SOURCES})
target_compile_definitions(nanocascade_core PUBLIC NC_HAVE_CUDA)
target_link_libraries(nanocascade_core PUBLIC nc_cuda_kernels CUDA::cudart CUDA::cublasLt
                                              CUDA::cublas)

# GPU tests (a separate binary: CI machines have no GPU) and GPU microbenchmarks.
if(NC_TESTS)
  add_subdirectory(${CMAKE_SOURCE_DIR}/tests/gpu ${CMAKE_BINARY_DIR}/tests/gpu)
endif()
option(NC_GPU_BENCH "Build the GPU microbenchmarks (bench/gpu)" ON)
if(NC_GPU_BENCH)
  add_subdirectory(${CMAKE_SOURCE_DIR}/bench/gpu ${CMAKE_BINARY_DIR}/bench/gpu)
endif()
