// Without the CUDA backend (NC_CUDA=OFF), make_cuda_backend() links and throws a clear nc::Error.
#include <gtest/gtest.h>

#include <string>

#include "backend/backend.h"

namespace nc {
namespace {

#ifndef NC_HAVE_CUDA
TEST(CudaStub, MakeCudaBackendThrowsBuiltWithoutCuda) {
  try {
    make_cuda_backend(0);
    FAIL() << "expected nc::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace nc
