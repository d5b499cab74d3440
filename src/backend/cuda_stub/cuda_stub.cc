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

#ifndef NC_HAVE_CUDA
#include "backend/nccl.h"

namespace nc {

bool nccl_built() {
  return false;
}

NcclUniqueId nccl_unique_id() {
  fail_as(ErrorKind::Unsupported, "NCCL: built without CUDA (configure with -DNC_CUDA=ON)");
}

std::unique_ptr<Communicator> make_nccl_communicator(Backend&, std::unique_ptr<Communicator>,
                                                     const NcclUniqueId&) {
  fail_as(ErrorKind::Unsupported, "NCCL: built without CUDA (configure with -DNC_CUDA=ON)");
}

}  // namespace nc
#endif
