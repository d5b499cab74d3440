// The JIT's compiler side: where nvcc and the headers are, the cache key of a configuration, the
// generated source and the nvcc command that turns it into a shared object.
//
// Paths come from compile definitions set by cmake/cuda.cmake (the source tree's src/ and
// FlashInfer folder, the toolkit's nvcc); the environment overrides them for a relocated bundle:
//   NC_JIT_INCLUDE_DIR  a folder holding src/ (our attention headers) and flashinfer/ (include/
//                       and cccl/ as NC_FLASHINFER_DIR has them)
//   NC_NVCC             the nvcc to run (else the build's, else `nvcc` on PATH)
//   NC_JIT_ARCH         the -arch value (else sm_<major><minor>, with "a" from 9.0 on)
// The cache key names everything the object depends on: the table ABI, the configuration
// (attn_key_string), FlashInfer's version, nvcc's version, the arch and a hash of our headers the
// source includes (so an edited header never loads a stale object).
#pragma once
#include <string>

#include "backend/cuda/attn_kernels.h"

namespace nc::cuda_host {

struct JitToolchain {
  std::string nvcc;          // empty: none found (objects can still come from the cache)
  std::string nvcc_version;  // e.g. "13.0.88"; the build's toolkit version when nvcc is absent
  std::string arch;          // e.g. "sm_90a"
  std::string src_dir;       // holds backend/cuda/attn_jit_entry.cuh
  std::string flashinfer_dir;
  std::string flashinfer_version;
};

// The toolchain for `device` (runs `nvcc --version` once).
JitToolchain detect_toolchain(int device);

// "nc-attn-jit abi=1 decode_hd256_w0_sc0_bf16 flashinfer=... nvcc=... arch=... src=<hash>".
std::string jit_cache_key(const cuda::AttnKernelKey& key, const JitToolchain& tc);
// The .cu of a configuration: its NC_ATTN_* defines and attn_jit_entry.cuh.
std::string jit_source(const cuda::AttnKernelKey& key, const std::string& table_key,
                       const std::string& entry_name);
// The shell command compiling `source` into the shared object `out` (output to `log`).
std::string nvcc_command(const JitToolchain& tc, const std::string& source, const std::string& out,
                         const std::string& log);
// Writes the source next to `out`, runs nvcc, removes the source; nc::Error with the end of
// nvcc's output on failure.
void jit_compile(const JitToolchain& tc, const cuda::AttnKernelKey& key,
                 const std::string& table_key, const std::string& out);

}  // namespace nc::cuda_host
