// The CUDA backend's FP8 linear: Backend::upload_fp8_linear, and linear() with an F8E4M3 weight.
// backend/fp8_weight.h gives the arithmetic, backend/cpu/cpu_fp8.h the reference it must match.
//
// Contract:
//   - upload(): the packed layout of fp8_weight.h (codes, row scales at fp8_scales_offset, the
//     input scale) in one device allocation, a Tensor F8E4M3 [M, K]. Refused (an Unsupported
//     nc::Error naming the GPU and its compute capability) below compute capability 8.9, which
//     has no FP8 tensor cores (check_fp8_capability).
//   - linear(x, w, bias, out): x bf16 [N, K]; w such a weight; bias [M] in out's dtype or
//     undefined; out [N, M] bf16 or float32. Each x row is quantised on the device to e4m3 with
//     its own scale (fp8_kernels.h: the rule of fp8_activation_scale, bit for bit the CPU's codes
//     and scales), then the e4m3 x e4m3 product runs with float32 accumulation and the scales
//     applied to the float sum: out = sum * s_x[n] * s_w[m] (+ bias), rounded to out's type (once;
//     twice on lt-epilogue with a bf16 output, below).
//   - Three kernels compute it, tried in this order for N > gemv_max_rows() (fp8_path_name):
//     1. "lt-outer": cuBLASLt's FP8 GEMM (Hopper's FP8 tensor cores, "TN" layout: W [M, K]
//        row-major is the transposed A, x the non-transposed B) with the per-token x
//        per-channel scales as cuBLASLt's outer-vector scale mode
//        (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F on A and B): the scales multiply the
//        float32 sum inside the GEMM before the one rounding, the bias rides the bias epilogue
//        (or fp8_add_bias where the heuristic has none with it). Measured 2026-12-06 on an H100
//        with CUDA 13.0's cuBLASLt: no algorithm offered at any shape; it stays
//        first for the libraries and GPUs (Blackwell) that have it.
//     2. "lt-epilogue": the same FP8 GEMM with unit (absent) scalar scales, which Hopper's
//        cuBLASLt runs, writing the unscaled float32 sums rounded to out's type into `out`;
//        then our epilogue (fp8_kernels.h: fp8_scale_output) rescales in place,
//        out = (sum * s_x[n]) * s_w[m] (+ bias), rounded once more to out's type. With a bf16
//        output the sum is thus rounded twice (each at most 2^-8 relative, about 1.3e-3
//        norm-wise over many values: together ~1.9e-3), against the e4m3 rounding of both
//        operands that the CPU reference shares (2^-4 relative each: a few percent norm-wise on
//        the product against the unquantised one): over 10x below FP8's own error, and under
//        the GPU test's 5e-3 against the CPU (which prints what it measures). The alternative, a
//        float32 scratch [rows, M] rounded once, costs 4 more bytes an output (GEMM write 4 +
//        epilogue read 4 + write 2 = 10 against 2 + 2 + 2 = 6) and a scratch of up to chunk rows x
//        M x 4 bytes (940 MB at 8,192 rows x 28,672), so it is not taken; a float32 output has one
//        rounding either way. cuBLASLt's per-row alpha vector
//        (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO, which could carry s_w) is not used:
//        the per-token s_x still needs a pass over the output, which then costs the same bytes, and
//        the bias must follow both scales.
//     3. "gemv": fp8_gemv (fp8_kernels.h), the path for N <= gemv_max_rows() (decode: the
//        weight read is the cost, one byte a weight), and the last fallback for any N where
//        cuBLASLt cannot run the shape: K or M not a multiple of 16, a pointer not 16-byte
//        aligned, or no algorithm (then the GEMV runs every row group: correct, slow).
//     Every projection of SmolLM2-135M (K 576, 1536; M 960, 576, 3072), Qwen3-0.6B and
//     Llama-3-8B has K and M multiples of 16. All three multiply the same e4m3 values with
//     float32 sums; they differ only in summation order (and lt-epilogue's second rounding).
//     Fast accumulation stays off on both cuBLASLt paths: Hopper's FP8 MMA keeps a narrower
//     accumulator than float32 (around 14 bits, DeepSeek-V3's technical report, section 3.3.2), and
//     without fast accumulation cuBLASLt promotes its partial sums to float32 periodically.
//   - The algorithm of each (rows, M, K, bias, output type, path) is asked of cuBLASLt's
//     heuristic once and cached (also when it has none).
//   - Rows are processed in chunks of chunk_rows(K) (a multiple of 16) through one fixed scratch
//     of kScratchCodeBytes codes plus their scales, allocated at the first upload (before the
//     engine sizes its KV cache from the free memory). Everything is enqueued on the context's
//     stream with no host synchronisation and no allocation, so linear() may be captured into a
//     CUDA graph; the quantised chunk is overwritten only by later work on the same stream.
//   - Environment (read once): NC_FP8_GEMV_MAX_ROWS (default 1) is the largest N the GEMV takes
//     by rule. One row, because on the H100 (2026-12-06, nc_gpu_bench fp8 on the 8B projections)
//     the GEMV beat lt-epilogue at N = 1 on all four (12-47 us vs 16-50 us), tied at N = 2 and
//     lost from N = 4 (e.g. gate_up 73.8 vs 50.1 us).
#pragma once
#include <compare>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/gemm_candidates.h"
#include "backend/fp8_weight.h"

namespace nc {
class Backend;
}

namespace nc::cuda_host {

// An Unsupported nc::Error unless compute capability major.minor is at least 8.9, naming `gpu`
// and its capability (--quantization none is the way out).
void check_fp8_capability(const std::string& gpu, int major, int minor);

enum class Fp8Path { Auto, Gemv, LtOuter, LtEpilogue };
const char* fp8_path_name(Fp8Path p);

class Fp8Gemm : NonCopyable {
 public:
  static constexpr int64_t kScratchCodeBytes = int64_t(32) << 20;
  static constexpr int64_t kMaxChunkRows = 65536;

  explicit Fp8Gemm(std::shared_ptr<Context> ctx);
  ~Fp8Gemm();

  Tensor upload(const Fp8Weight& w);
  // `path`: Auto picks as the contract says; another forces that kernel (tests, benchmarks; a
  // cuBLASLt path throws where cuBLASLt cannot run the shape: see can_run). product_only
  // (benchmarks only, to time the product alone): x is not read, the product takes whatever
  // codes and scales the scratch holds, and lt-epilogue leaves out unscaled (no epilogue).
  // `norm` (may be null; then norm_fusable(x, *norm) must hold): add_rmsnorm's norm first, in
  // the activation quantiser's kernel (fp8_add_rmsnorm_quantize): residual += x, x = the
  // normalised rows, then the product of x as linear() computes it.
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out,
              Fp8Path path = Fp8Path::Auto, bool product_only = false,
              const AddNorm* norm = nullptr);
  // Whether the norm can ride the quantiser for x: NC_FP8_FUSED_NORM is not 0, x and
  // norm.residual bf16 [N, K] contiguous and 16-byte aligned, norm.weight bf16 [K], K a
  // multiple of 8 that fits the kernel's shared memory.
  bool norm_fusable(const Tensor& x, const AddNorm& norm) const;
  // The gated MLP's FP8 form with fewer kernels (backend.h's silu_mlp; fp8_mlp.cc): for each chunk
  // of rows, x's quantiser, gate_up's GEMM, fp8_silu_mul_quantize (gate_up's scale epilogue,
  // SiLU-and-mul and down's quantiser in one kernel) and down's GEMM and epilogue; 5 kernels
  // where linear, silu_and_mul and linear run 7. The same bits as those three ops where all N rows
  // fit one chunk of both projections (else gate_up's GEMM runs in smaller chunks: other
  // cuBLASLt algorithms may sum in another order). x bf16 [N, H]; gate_up_w [2I, H] and down_w
  // [M, I] FP8 weights; gate_up bf16 [N, 2I] scratch; out bf16 [N, M]. Returns false with
  // nothing enqueued where it does not apply: NC_FP8_FUSED_MLP=0, N within the GEMV's rows, a
  // path other than lt-epilogue for either projection, I not a multiple of 8 or too wide for
  // the kernel's shared memory.
  // With `norm` (may be null), its add_rmsnorm rides x's quantiser as in linear(); where the
  // norm cannot (norm_fusable), false.
  bool silu_mlp(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w, Tensor gate_up,
                Tensor out, const AddNorm* norm);
  // The path linear() takes for these operands under Auto (never Auto).
  Fp8Path chosen(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out);
  // Whether linear() with `path` forced runs on these operands (Auto and Gemv: always; a
  // cuBLASLt path: the shape and alignment allow it and the heuristic has an algorithm for
  // every chunk's row count).
  bool can_run(Fp8Path path, const Tensor& x, const Tensor& w, const Tensor& bias,
               const Tensor& out);
  // Benchmarks: lt-epilogue's epilogue alone on out [N, M] (N <= kMaxChunkRows), with the row
  // scales the scratch holds and w's column scales (+ bias): out's values are rescaled in place.
  void epilogue_only(const Tensor& w, const Tensor& bias, Tensor out);
  // Benchmarks: cuBLASLt's fast accumulation on (off by default, as the contract says); drops
  // the cached plans.
  void set_fast_accum_for_bench(bool on);
  // Tests: x's codes [N, K] and scales [N] as the quantiser writes them for weight w (N at most
  // chunk_rows(K)); synchronises.
  void quantize_for_test(const Tensor& x, const Tensor& w, std::vector<uint8_t>* codes,
                         std::vector<float>* scales);

  int gemv_max_rows() const { return gemv_max_rows_; }
  static int64_t chunk_rows(int64_t k);
  int64_t scratch_bytes() const;

 private:
  struct Key {
    int64_t n, m, k;
    bool bias, f32_out;
    Fp8Path path;  // LtOuter or LtEpilogue
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    LtLayouts lt;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;          // cuBLASLt has an algorithm for the shape
    bool bias_fused = false;  // lt-outer: the bias rides cuBLASLt's epilogue (else a separate add)
  };
  // One chunk of rows: its activations, output rows and the weight's parts (device pointers).
  struct Chunk {
    const void* x;
    const uint8_t* w;
    const float* w_scale;
    const float* input_scale;
    const void* bias;
    void* out;
    int64_t n, m, k;
    bool f32_out;
    const float* act_scales = nullptr;  // the codes' row scales (null: the scratch's first array)
    void* residual = nullptr;           // with a fused norm: the chunk's residual rows,
    const AddNorm* norm = nullptr;      // and the norm (x's rows are then written too)
  };

  void ensure_scratch();
  bool lt_shape_ok(const Tensor& x, const Tensor& w, const Tensor& out) const;
  Plan& plan_for(const Key& key);
  Plan& plan_for(Fp8Path path, int64_t n, int64_t m, int64_t k, bool bias, bool f32_out);
  void run_chunk(const Chunk& c, Fp8Path path, bool forced, bool product_only);
  void quantize_chunk(const Chunk& c, uint8_t* codes, float* scales);
  void run_lt(const Chunk& c, const Plan& p, Fp8Path path, bool scale);
  bool lt_shape_ok(int64_t k, const Tensor& w, const Tensor& out) const;
  bool silu_mlp_applies(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w,
                        const Tensor& gate_up, const Tensor& out, const AddNorm* norm);

  std::shared_ptr<Context> ctx_;
  int gemv_max_rows_ = 1;
  bool fast_accum_ = false;
  int cc_major_ = 0, cc_minor_ = 0;
  bool fuse_mlp_ = true, fuse_norm_ = true;
  Tensor scratch_;  // kScratchCodeBytes codes, then twice kMaxChunkRows float scales
  std::map<Key, Plan> plans_;
};

// The CUDA backend's FP8 GEMM (defined in cuda_backend.cc); nc::Error when `b` is not the CUDA
// backend.
Fp8Gemm& cuda_fp8_gemm(Backend& b);

}  // namespace nc::cuda_host
