// FP8 KV cache support by compute capability (fp8_kv_support.h).
#include "backend/cuda/fp8_kv_support.h"

#include <cuda_runtime_api.h>

#include "core/error.h"

namespace nc::cuda_host {

bool fp8_kv_capable(int major, int minor) {
  return major > kFp8KvMinMajor || (major == kFp8KvMinMajor && minor >= kFp8KvMinMinor);
}

void check_fp8_kv_capable(const std::string& gpu, int major, int minor) {
  NC_CHECK_AS(ErrorKind::Unsupported, fp8_kv_capable(major, minor),
              "kv cache dtype fp8: {} has compute capability {}.{}; an FP8 (e4m3) KV cache needs "
              "{}.{} or later (Ada, Hopper, Blackwell: hardware e4m3 conversion)",
              gpu, major, minor, kFp8KvMinMajor, kFp8KvMinMinor);
}

void check_fp8_kv_device(int device, const std::string& gpu) {
  int major = 0, minor = 0;
  NC_CHECK(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
          cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess,
      "kv cache dtype fp8: cannot read the compute capability of {}", gpu);
  check_fp8_kv_capable(gpu, major, minor);
}

}  // namespace nc::cuda_host
