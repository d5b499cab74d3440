// nc_jit_prebuild KEY...: compiles attention configurations into the JIT cache ahead of a run
// (tools/gpu_check.sh pack fills the bundle's cache with the keys the GPU tests and benchmarks
// use). Keys as attn_key_string names them (e.g. decode_hd256_w0_sc0_bf16,
// decode_hd128_w0_sc0_bf16_kvfp8, ragged_causal_hd192_vo128_w0_sc0_bf16). Without a GPU, set
// NC_JIT_ARCH (e.g. sm_90a); the cache folder is NC_JIT_CACHE's (or the default).
#include <cstdio>
#include <regex>
#include <string>

#include "backend/cuda/attn_registry.h"

namespace {

nc::cuda::AttnKernelKey parse_key(const std::string& s) {
  static const std::regex re(
      "^(decode|prefill_causal|prefill_none|ragged_causal)_hd([0-9]+)(_vo([0-9]+))?_w([01])_sc([01]"
      ")_"
      "bf16(_kvfp8)?$");
  std::smatch m;
  if (!std::regex_match(s, m, re)) throw std::runtime_error("bad key '" + s + "'");
  nc::cuda::AttnKernelKey k;
  k.kind = m[1] == "decode"           ? nc::cuda::AttnKind::Decode
           : m[1] == "prefill_causal" ? nc::cuda::AttnKind::PrefillCausal
           : m[1] == "ragged_causal"  ? nc::cuda::AttnKind::RaggedCausal
                                      : nc::cuda::AttnKind::PrefillNone;
  k.head_dim = std::stoi(m[2]);
  if (m[4].matched) k.head_dim_vo = std::stoi(m[4]);
  k.window = m[5] == "1";
  k.soft_cap = m[6] == "1";
  k.kv_fp8 = m[7].matched;
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    nc::cuda_host::JitOptions opt;
    opt.use_aot = false;
    nc::cuda_host::AttnRegistry reg(opt);
    for (int i = 1; i < argc; ++i) reg.get(parse_key(argv[i]));
    const nc::cuda_host::JitStats st = reg.stats();
    std::printf("nc_jit_prebuild: %lld compiled (%.1f s), %lld already cached, in %s\n",
                (long long)st.compiles, st.compile_seconds, (long long)st.hits,
                reg.cache_dir().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nc_jit_prebuild: %s\n", e.what());
    return 1;
  }
  return 0;
}
