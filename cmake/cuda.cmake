# The CUDA backend (FlashInfer + cuBLASLt) as the layer backend_cuda, included by the top-level
# CMakeLists when NC_CUDA=ON (without it, backend_cuda is src/backend/cuda_stub).
#
# Layout: the device code (src/backend/cuda/*.cu) builds into the static library nc_cuda_kernels,
# which includes FlashInfer and CUDA headers and, of ours, only the include views of core and
# backend_cuda; the host side (src/backend/cuda/*.cc: the Backend class, memory, cuBLASLt, plans)
# is the layer nc_backend_cuda (on top of backend), which links the kernels.
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
nc_layer_view(core NC_CORE_VIEW)
nc_layer_view(backend_cuda NC_BACKEND_CUDA_VIEW)
target_include_directories(nc_cuda_kernels PRIVATE ${NC_CORE_VIEW} ${NC_BACKEND_CUDA_VIEW})
target_compile_options(nc_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --expt-extended-lambda
                            -Xcompiler=-Wno-unused-parameter>)
# FlashInfer's host code needs the bf16/fp8 types; keep its PDL/arch checks consistent.
target_compile_definitions(nc_cuda_kernels PRIVATE FLASHINFER_ENABLE_BF16 FLASHINFER_ENABLE_F16)
set_target_properties(nc_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                                                 CUDA_SEPARABLE_COMPILATION OFF)
target_link_libraries(nc_cuda_kernels PUBLIC CUDA::cudart)

nc_layer(NAME backend_cuda DIR backend/cuda DEPS backend
         LIBS nc_cuda_kernels CUDA::cudart CUDA::cublasLt CUDA::cublas)
target_compile_definitions(nc_backend_cuda PUBLIC NC_HAVE_CUDA)
