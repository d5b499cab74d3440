// Candidate kernels of one GEMM shape (gemm_candidates.h).
#include "backend/cuda/gemm_candidates.h"

#include <cstdlib>
#include <initializer_list>
#include <map>
#include <sstream>

#include "backend/cuda/gemv_kernels.h"

namespace nc::cuda_host {
namespace {

// Split-K variants are tried on this many of the heuristic's first algorithms.
constexpr int kSplitBases = 4;
constexpr int kSplits[] = {2, 4, 8, 16};
// A split keeps at least this many K elements.
constexpr int64_t kMinSplitK = 128;

// Every setting of a cuBLASLt algorithm, with its size in bytes (cublasLt.h).
struct AlgoSetting {
  cublasLtMatmulAlgoConfigAttributes_t attr;
  const char* key;
  size_t bytes;
};
constexpr AlgoSetting kSettings[] = {
    {CUBLASLT_ALGO_CONFIG_ID, "id", 4},
    {CUBLASLT_ALGO_CONFIG_TILE_ID, "tile", 4},
    {CUBLASLT_ALGO_CONFIG_STAGES_ID, "stages", 4},
    {CUBLASLT_ALGO_CONFIG_SPLITK_NUM, "splitk", 4},
    {CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, "red", 4},
    {CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, "swizzle", 4},
    {CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, "custom", 4},
    {CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, "inner", 2},
    {CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, "cluster", 2},
};

template <typename T>
T algo_config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof(v), &written);
  return v;
}

std::string algo_name(int index, const cublasLtMatmulAlgo_t& algo) {
  return "lt#" + std::to_string(index) +
         " id=" + std::to_string(algo_config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID)) +
         " tile=" + std::to_string(algo_config<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID)) +
         " splitk=" + std::to_string(algo_config<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
}

std::vector<cublasLtMatmulAlgo_t> heuristic_algos(const Context& ctx, const LtLayouts& lt,
                                                  const GemmArgs& a, int top_n) {
  cublasLtMatmulPreference_t pref;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = ctx.lt_workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  const uint32_t al = uint32_t(a.align);
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  }
  std::vector<cublasLtMatmulHeuristicResult_t> results(size_t(std::max(top_n, 1)));
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      ctx.lt, lt.desc, lt.a, lt.b, lt.c, lt.c, pref, int(results.size()), results.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  NC_CHECK(st == CUBLAS_STATUS_SUCCESS && found > 0,
           "linear: cuBLASLt has no bf16 algorithm for [{}, {}] x [{}, {}]^T (status {})", a.n, a.k,
           a.m, a.k, int(st));
  std::vector<cublasLtMatmulAlgo_t> out;
  for (int i = 0; i < found; ++i)
    if (results[size_t(i)].state == CUBLAS_STATUS_SUCCESS) out.push_back(results[size_t(i)].algo);
  return out;
}

// `base` with `splits` K slices, if cuBLASLt accepts it within the workspace.
bool split_variant(const Context& ctx, const LtLayouts& lt, const cublasLtMatmulAlgo_t& base,
                   int splits, cublasLtMatmulAlgo_t* out) {
  *out = base;
  const uint32_t s = uint32_t(splits);
  if (cublasLtMatmulAlgoConfigSetAttribute(out, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &s, sizeof(s)) !=
      CUBLAS_STATUS_SUCCESS)
    return false;
  uint32_t mask = 0;
  size_t written = 0;
  cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &mask,
                                    sizeof(mask), &written);
  for (uint32_t scheme : {uint32_t(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE),
                          uint32_t(CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE),
                          uint32_t(CUBLASLT_REDUCTION_SCHEME_INPLACE)}) {
    if ((mask & scheme) == 0) continue;
    cublasLtMatmulAlgoConfigSetAttribute(out, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                         sizeof(scheme));
    cublasLtMatmulHeuristicResult_t r{};
    if (cublasLtMatmulAlgoCheck(ctx.lt, lt.desc, lt.a, lt.b, lt.c, lt.c, out, &r) ==
            CUBLAS_STATUS_SUCCESS &&
        r.workspaceSize <= ctx.lt_workspace_bytes)
      return true;
  }
  return false;
}

void add_split_variants(const Context& ctx, const LtLayouts& lt, const GemmArgs& a,
                        std::vector<GemmCandidate>& cands) {
  const size_t bases = std::min<size_t>(cands.size(), kSplitBases);
  for (size_t i = 0; i < bases; ++i) {
    const cublasLtMatmulAlgo_t base = cands[i].algo;
    int32_t supported = 0;
    size_t written = 0;
    cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &supported,
                                      sizeof(supported), &written);
    if (!supported || algo_config<uint32_t>(base, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) > 1) continue;
    for (int s : kSplits) {
      if (a.k / s < kMinSplitK) break;
      GemmCandidate c;
      if (!split_variant(ctx, lt, base, s, &c.algo)) continue;
      c.name = "lt#" + std::to_string(i) + " splitk=" + std::to_string(s);
      cands.push_back(c);
    }
  }
}

}  // namespace

LtLayouts make_lt_layouts(const GemmArgs& a) {
  LtLayouts g;
  cublas_check(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  set_lt_desc(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, "transa");
  set_lt_desc(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, "transb");
  if (a.bias) {
    set_lt_desc(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS, "epilogue");
    const cudaDataType_t bt = a.f32_out ? CUDA_R_32F : CUDA_R_16BF;
    set_lt_desc(g.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bt, "bias type");
  }
  cublas_check(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, a.k, a.m, a.k), "layout a");
  cublas_check(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, a.k, a.n, a.k), "layout b");
  cublas_check(
      cublasLtMatrixLayoutCreate(&g.c, a.f32_out ? CUDA_R_32F : CUDA_R_16BF, a.m, a.n, a.m),
      "layout c");
  return g;
}

void destroy_lt_layouts(LtLayouts& l) {
  cublasLtMatrixLayoutDestroy(l.a);
  cublasLtMatrixLayoutDestroy(l.b);
  cublasLtMatrixLayoutDestroy(l.c);
  cublasLtMatmulDescDestroy(l.desc);
  l = LtLayouts{};
}

std::vector<GemmCandidate> list_candidates(const Context& ctx, const LtLayouts& lt,
                                           const GemmArgs& a, int top_n, bool extras) {
  // Untuned, one row takes the GEMV kernel: 1.0-2.6x faster than cuBLASLt's pick for nine of
  // the ten decode projections of the Qwen3-0.6B and Llama-3-8B shapes on the H200 (2026-12-05,
  // `nc_gpu_bench gemm-decode`; 3% slower on the 8B gate_up); from 16 rows it is 3-5x slower.
  if (!extras && a.n == 1 && a.align >= 16 && cuda::gemv_supported(a.n, a.k, a.x, a.w))
    return {{true, {}, "gemv"}};
  std::vector<GemmCandidate> cands;
  const std::vector<cublasLtMatmulAlgo_t> algos = heuristic_algos(ctx, lt, a, extras ? top_n : 1);
  for (size_t i = 0; i < algos.size(); ++i)
    cands.push_back({false, algos[i], algo_name(int(i), algos[i])});
  if (!extras) return cands;
  add_split_variants(ctx, lt, a, cands);
  if (a.align >= 16 && cuda::gemv_supported(a.n, a.k, a.x, a.w))
    cands.push_back({true, {}, "gemv"});
  return cands;
}

std::string candidate_config(const GemmCandidate& c) {
  if (c.gemv) return "gemv";
  std::string s = "lt";
  for (const AlgoSetting& a : kSettings) {
    uint32_t v = 0;  // little-endian: a 2-byte setting lands in the low bytes
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&c.algo, a.attr, &v, a.bytes, &written);
    s += std::string(" ") + a.key + "=" + std::to_string(v);
  }
  return s;
}

bool candidate_from_config(const Context& ctx, const LtLayouts& lt, const GemmArgs& a,
                           const std::string& config, GemmCandidate* out) {
  if (config == "gemv") {
    *out = {true, {}, "gemv"};
    return a.align >= 16 && cuda::gemv_supported(a.n, a.k, a.x, a.w);
  }
  std::istringstream in(config);
  std::string word;
  if (!(in >> word) || word != "lt") return false;
  std::map<std::string, uint32_t> values;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) return false;
    const std::string digits = word.substr(eq + 1);
    char* end = nullptr;
    const unsigned long v = std::strtoul(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0' || v > 0xffffffffUL) return false;  // a corrupt file
    values[word.substr(0, eq)] = uint32_t(v);
  }
  if (values.size() != std::size(kSettings) || !values.count("id")) return false;
  const cudaDataType_t ct = a.f32_out ? CUDA_R_32F : CUDA_R_16BF;
  GemmCandidate c;
  if (cublasLtMatmulAlgoInit(ctx.lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, ct,
                             ct, int(values["id"]), &c.algo) != CUBLAS_STATUS_SUCCESS)
    return false;
  for (const AlgoSetting& s : kSettings) {
    if (s.attr == CUBLASLT_ALGO_CONFIG_ID) continue;
    const uint32_t v = values[s.key];
    if (cublasLtMatmulAlgoConfigSetAttribute(&c.algo, s.attr, &v, s.bytes) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  cublasLtMatmulHeuristicResult_t r{};
  if (cublasLtMatmulAlgoCheck(ctx.lt, lt.desc, lt.a, lt.b, lt.c, lt.c, &c.algo, &r) !=
          CUBLAS_STATUS_SUCCESS ||
      r.workspaceSize > ctx.lt_workspace_bytes)
    return false;
  c.name = "restored " + config;
  *out = c;
  return true;
}

cublasStatus_t launch_candidate(const Context& ctx, const LtLayouts& lt, const GemmCandidate& c,
                                const GemmArgs& a) {
  if (c.gemv) {
    k_call([&] { cuda::gemv_bf16(a.x, a.w, a.bias, a.out, a.f32_out, a.n, a.m, a.k, ctx.stream); });
    return CUBLAS_STATUS_SUCCESS;
  }
  if (a.bias) set_lt_desc(lt.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, a.bias, "bias pointer");
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: out^T [M, N] = W [M, K] (stored as K x M, transposed) * x^T [K, N].
  return cublasLtMatmul(ctx.lt, lt.desc, &alpha, a.w, lt.a, a.x, lt.b, &beta, a.out, lt.c, a.out,
                        lt.c, &c.algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream);
}

}  // namespace nc::cuda_host
