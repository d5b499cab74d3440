// Which GPUs the CUDA backend serves an FP8 (E4M3) KV cache on (kv/kv_dtype.h; docs/memory.md).
//
// Compute capability 8.9 (Ada) and later: from there the GPU converts e4m3 <-> float in hardware
// (cvt ... e4m3x2), which FlashInfer's FP8 kernels and our quantising append use
// (FLASHINFER_HARDWARE_FP8_CONVERSION_ENABLED); older GPUs would need a software conversion in
// every attention loop. check_fp8_kv_capable throws nc::Error (Unsupported) naming the GPU and
// its compute capability when it is older; it is a plain function of its arguments, so a test
// can give it any capability. check_fp8_kv_device reads the device's and checks it.
#pragma once
#include <string>

namespace nc::cuda_host {

inline constexpr int kFp8KvMinMajor = 8;
inline constexpr int kFp8KvMinMinor = 9;

bool fp8_kv_capable(int major, int minor);
void check_fp8_kv_capable(const std::string& gpu, int major, int minor);
// `gpu` names the device in the error (Context::name).
void check_fp8_kv_device(int device, const std::string& gpu);

}  // namespace nc::cuda_host
