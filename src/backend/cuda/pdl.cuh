// Programmatic dependent launch for our own kernels (pdl.h says when it is on).
//
// Device side: pdl_wait() blocks until every kernel this one depends on has completed and its
// writes are visible (griddepcontrol.wait); pdl_trigger() lets the next kernel of the stream be
// scheduled early (griddepcontrol.launch_dependents). Both are no-ops below sm_90 and when the
// kernel was launched normally. A kernel launched with launch_maybe_pdl must call pdl_wait() on
// every path before it reads what an earlier kernel writes or writes what an earlier kernel reads
// (a thread that returns early calls it first), and before it exits: the kernel after it relies
// on that wait for everything before (transitively).
//
// Host side: launch_maybe_pdl(what, kernel, grid, block, smem, stream, args...) launches with the
// programmatic-stream-serialization attribute when pdl_enabled(), else as <<<>>> would; a failed
// launch throws std::runtime_error naming `what` (cuda_check.cuh).
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/pdl.h"

namespace nc::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

template <typename... KernelArgs, typename... Args>
void launch_maybe_pdl(const char* what, void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                      size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  check_cuda(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), what);
}

}  // namespace nc::cuda
