// The MoE experts' tensor-core grouped GEMM (moe_grouped.h): CUTLASS's SM80 grouped GEMM with a
// device-side scheduler, its arguments written on the device.
#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/moe_grouped.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/gemm/device/gemm_grouped.h"
#include "cutlass/gemm/kernel/default_gemm_grouped.h"
#include "cutlass/numeric_types.h"

namespace nc::cuda {
namespace {

using cutlass::gemm::GemmCoord;
using Index = int64_t;  // CUTLASS's LongIndex of the row/column-major strides

// 128 x 128 x 32 tiles, 2 x 2 warps of 64 x 64, mma 16x8x16, 4 pipeline stages (64 KiB of shared
// memory: every sm_80+ part has room). One shape for every size keeps batch invariance.
template <typename Out>
using GroupedKernel = typename cutlass::gemm::kernel::DefaultGemmGrouped<
    cutlass::bfloat16_t, cutlass::layout::RowMajor, cutlass::ComplexTransform::kNone, 8,
    cutlass::bfloat16_t, cutlass::layout::ColumnMajor, cutlass::ComplexTransform::kNone, 8, Out,
    cutlass::layout::RowMajor, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 128, 32>, cutlass::gemm::GemmShape<64, 64, 32>,
    cutlass::gemm::GemmShape<16, 8, 16>,
    cutlass::epilogue::thread::LinearCombination<Out, 128 / cutlass::sizeof_bits<Out>::value, float,
                                                 float>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, 4>::GemmKernel;

template <typename Out>
using Grouped = cutlass::gemm::device::GemmGrouped<GroupedKernel<Out>>;

// The argument block of one projection: problems[E], then pointer and stride arrays of E each.
struct ArgsView {
  GemmCoord* problems;
  void** a;
  void** w;
  void** c;
  Index* lda;
  Index* ldw;
  Index* ldc;
};

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

ArgsView view(void* args, int E) {
  char* p = static_cast<char*>(args);
  ArgsView v{};
  size_t at = 0;
  auto take = [&](size_t bytes) {
    char* here = p + at;
    at = align256(at + bytes);
    return here;
  };
  v.problems = reinterpret_cast<GemmCoord*>(take(sizeof(GemmCoord) * size_t(E)));
  v.a = reinterpret_cast<void**>(take(sizeof(void*) * size_t(E)));
  v.w = reinterpret_cast<void**>(take(sizeof(void*) * size_t(E)));
  v.c = reinterpret_cast<void**>(take(sizeof(void*) * size_t(E)));
  v.lda = reinterpret_cast<Index*>(take(sizeof(Index) * size_t(E)));
  v.ldw = reinterpret_cast<Index*>(take(sizeof(Index) * size_t(E)));
  v.ldc = reinterpret_cast<Index*>(take(sizeof(Index) * size_t(E)));
  return v;
}

// One thread per expert: its problem size, operand pointers and strides from the offsets.
__global__ void grouped_args_kernel(ArgsView v, const char* A, const char* W, char* C, int c_bytes,
                                    int N, int K, const int* offsets, int E) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= E) return;
  const int64_t r0 = offsets[e], m = offsets[e + 1] - r0;
  v.problems[e] = GemmCoord(int(m), N, K);
  v.a[e] = const_cast<char*>(A + r0 * K * int64_t(sizeof(__nv_bfloat16)));
  v.w[e] = const_cast<char*>(W + int64_t(e) * N * K * int64_t(sizeof(__nv_bfloat16)));
  v.c[e] = C + r0 * N * c_bytes;
  v.lda[e] = K;
  v.ldw[e] = K;  // column-major K x N: W_e's rows are its columns
  v.ldc[e] = N;
}

// Persistent blocks for the whole device: occupancy x SMs, once per process (per output type).
template <typename Out>
int block_count() {
  static const int blocks = [] {
    const int per_sm = Grouped<Out>::maximum_active_blocks();
    int device = 0, sms = 0;
    check_cuda(cudaGetDevice(&device), "cudaGetDevice");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
               "cudaDeviceGetAttribute");
    if (per_sm <= 0)
      throw std::runtime_error("moe grouped gemm: the CUTLASS kernel fits no block per SM (" +
                               std::to_string(per_sm) + ")");
    return per_sm * sms;
  }();
  return blocks;
}

template <typename Out>
void run_grouped(const ArgsView& v, int E, cudaStream_t stream) {
  using G = Grouped<Out>;
  typename G::EpilogueOutputOp::Params epilogue(1.0f, 0.0f);  // beta 0: C is not read
  typename G::Arguments args(
      v.problems, E, block_count<Out>(), epilogue, reinterpret_cast<cutlass::bfloat16_t**>(v.a),
      reinterpret_cast<cutlass::bfloat16_t**>(v.w), reinterpret_cast<Out**>(v.c),
      reinterpret_cast<Out**>(v.c), v.lda, v.ldw, v.ldc, v.ldc);
  G gemm;
  // Device-side scheduling: initialize() reads nothing on the host and needs no workspace.
  cutlass::Status st = gemm.initialize(args, nullptr, stream);
  if (st == cutlass::Status::kSuccess) st = gemm.run(stream);
  if (st != cutlass::Status::kSuccess)
    throw std::runtime_error(std::string("moe grouped gemm (CUTLASS): ") +
                             cutlassGetStatusString(st) + " for " + std::to_string(E) + " experts");
}

}  // namespace

bool moe_grouped_supported(int hidden, int inter) {
  return hidden > 0 && inter > 0 && hidden % 8 == 0 && inter % 8 == 0;
}

size_t moe_grouped_args_bytes(int num_experts) {
  const size_t e = size_t(num_experts);
  return align256(sizeof(GemmCoord) * e) + 3 * align256(sizeof(void*) * e) +
         3 * align256(sizeof(Index) * e);
}

void moe_grouped_gemm(const void* A, const void* W, void* C, MoeGemmOut out, int N, int K,
                      const int* offsets, int E, void* args, cudaStream_t stream) {
  if (N % 8 != 0 || K % 8 != 0)
    throw std::runtime_error("moe grouped gemm: N " + std::to_string(N) + " and K " +
                             std::to_string(K) + " must be multiples of 8");
  const ArgsView v = view(args, E);
  const int c_bytes = out == MoeGemmOut::F32 ? 4 : 2;
  grouped_args_kernel<<<unsigned((E + 127) / 128), 128, 0, stream>>>(
      v, static_cast<const char*>(A), static_cast<const char*>(W), static_cast<char*>(C), c_bytes,
      N, K, offsets, E);
  check_launch("moe grouped gemm args");
  if (out == MoeGemmOut::F32)
    run_grouped<float>(v, E, stream);
  else
    run_grouped<cutlass::bfloat16_t>(v, E, stream);
}

}  // namespace nc::cuda
