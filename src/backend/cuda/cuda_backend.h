// The CUDA backend's own options (make_cuda_backend() in backend.h uses the defaults).
#pragma once
#include <memory>

#include "backend/backend.h"

namespace nc {

// Which kernel runs a level whose entries all have one query row (a decode step).
enum class DecodeKernel {
  Auto,         // CUDA cores for GQA group sizes below 4, tensor cores (the prefill kernel) above
  CudaCores,    // FlashInfer's batch decode kernel
  TensorCores,  // FlashInfer's batch prefill kernel with q_len 1
};

struct CudaBackendOptions {
  DecodeKernel decode_kernel = DecodeKernel::Auto;
};

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options);

// What the last plan_attention() chose per level (for tests and benchmarks): true where a level
// ran FlashInfer's CUDA-core decode kernel.
std::vector<bool> cuda_plan_uses_decode_kernel(const AttentionPlan& plan);

}  // namespace nc
