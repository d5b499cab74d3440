// Error checks shared by the CUDA translation units: a CUDA error code or an exception from a
// FlashInfer call becomes std::runtime_error naming the operation (the backend turns it into
// nc::Error at its edge).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace nc::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// After a kernel launch of our own.
inline void check_launch(const char* what) {
  check_cuda(cudaGetLastError(), what);
}

// Runs a FlashInfer call, turning its exceptions and error codes into std::runtime_error.
template <typename F>
void fi_call(const char* what, F&& f) {
  cudaError_t e;
  try {
    e = f();
  } catch (const std::exception& ex) {
    throw std::runtime_error(std::string(what) + ": " + ex.what());
  }
  check_cuda(e, what);
}

}  // namespace nc::cuda
