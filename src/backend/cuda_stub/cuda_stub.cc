// make_cuda_backend() for builds without the CUDA backend (NC_CUDA=OFF). With NC_CUDA=ON,
// cmake/cuda.cmake defines NC_HAVE_CUDA and src/backend/cuda/cuda_backend.cc provides it.
#ifndef NC_HAVE_CUDA
#include "backend/backend.h"
#include "core/error.h"

namespace nc {

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  fail("make_cuda_backend({}): built without CUDA (configure with -DNC_CUDA=ON)", device_index);
}

}  // namespace nc
#endif
