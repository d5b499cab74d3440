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
//     applied to the float sum: out = sum * s_x[n] * s_w[m] (+ bias), rounded once to out's type.
//   - Two kernels compute it. cuBLASLt's FP8 GEMM (Hopper's FP8 tensor cores, "TN" layout: W
//     [M, K] row-major is the transposed A, x the non-transposed B) with the per-token x
//     per-channel scales as cuBLASLt's outer-vector scale mode
//     (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F on A and B, cuBLAS 12.9+ on Hopper): the scales
//     are applied inside the GEMM's epilogue to the float32 sum before the one rounding to bf16,
//     so no float32 intermediate [N, M] and no extra pass are needed (the alternative, unit
//     scales with a float32 output and our own scaling kernel, costs a write and a read of
//     4 bytes an output). The bias rides cuBLASLt's bias epilogue, or a separate add where the
//     heuristic has no algorithm with it. Fast accumulation stays off (cuBLASLt then promotes
//     the tensor cores' partial sums to float32 periodically). And fp8_gemv (fp8_kernels.h) for
//     N <= gemv_max_rows() (decode: the weight read is the cost, one byte a weight), or for any N
//     where cuBLASLt cannot run the shape: K or M not a multiple of 16, a pointer not 16-byte
//     aligned, or no algorithm from the heuristic (then the GEMV runs every row group: correct,
//     slow). Every projection of SmolLM2-135M (K 576, 1536; M 960, 576, 3072), Qwen3-0.6B and
//     Llama-3-8B has K and M multiples of 16. Both kernels multiply the same e4m3 values with
//     float32 sums; they differ only in summation order.
//   - Rows are processed in chunks of chunk_rows(K) (a multiple of 16) through one fixed scratch
//     of kScratchCodeBytes codes plus their scales, allocated at the first upload (before the
//     engine sizes its KV cache from the free memory). Everything is enqueued on the context's
//     stream with no host synchronisation and no allocation, so linear() may be captured into a
//     CUDA graph; the quantised chunk is overwritten only by later work on the same stream.
//   - Environment (read once): NC_FP8_GEMV_MAX_ROWS (default 8) is the largest N the GEMV takes
//     by rule.
#pragma once
#include <compare>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

enum class Fp8Path { Auto, Gemv, CublasLt };
const char* fp8_path_name(Fp8Path p);

class Fp8Gemm : NonCopyable {
 public:
  static constexpr int64_t kScratchCodeBytes = int64_t(32) << 20;
  static constexpr int64_t kMaxChunkRows = 65536;

  explicit Fp8Gemm(std::shared_ptr<Context> ctx);
  ~Fp8Gemm();

  Tensor upload(const Fp8Weight& w);
  // `path`: Auto picks as the contract says; Gemv or CublasLt force one (tests, benchmarks;
  // CublasLt throws where cuBLASLt cannot run the shape). quantise = false (benchmarks only, to
  // time the product alone): x is not read; the product takes whatever codes the scratch holds.
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out,
              Fp8Path path = Fp8Path::Auto, bool quantise = true);
  // The path linear() takes for these operands under Auto (never Auto).
  Fp8Path chosen(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out);
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
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    LtLayouts lt;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;          // cuBLASLt has an algorithm for the shape
    bool bias_fused = false;  // the bias rides the epilogue (else a separate add)
  };
  struct Chunk;

  void ensure_scratch();
  bool lt_shape_ok(const Tensor& x, const Tensor& w, const Tensor& out) const;
  Plan& plan_for(const Key& key);
  void run_chunk(const Chunk& c, Fp8Path path, bool forced, bool quantise);

  std::shared_ptr<Context> ctx_;
  int gemv_max_rows_ = 8;
  int cc_major_ = 0, cc_minor_ = 0;
  Tensor scratch_;  // kScratchCodeBytes codes, then kMaxChunkRows float scales
  std::map<Key, Plan> plans_;
};

// The CUDA backend's FP8 GEMM (defined in cuda_backend.cc); nc::Error when `b` is not the CUDA
// backend.
Fp8Gemm& cuda_fp8_gemm(Backend& b);

}  // namespace nc::cuda_host
