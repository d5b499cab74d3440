// cpu_matmul: validates the weight view, then splits the W rows across the pool. Int8 and int16
// activations: the x rows are quantized once (where the format's dot product wants it; int16:
// quant_i16.h), and each thread walks its rows in tiles small enough to stay in cache while every
// x row passes over them (four rows at a time interleaved where the path has such kernels). Float
// activations against block weights: at N = 1 the weight rows are decoded in registers, four at a
// time; at N > 1 each thread decodes a strip of its rows into a cache-resident float buffer and
// runs the path's gemm over all x rows (quant_fdot.h: the same bits either way).
#include "backend/cpu/cpu_matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/quant_fdot.h"
#include "backend/cpu/quant_i16.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"

namespace nc {
namespace {

enum class Act { Float, X32, X256, X16 };

struct Plan {
  qk::DotFn dot;
  Act act;
  qk::Dot4Fn dot4 = nullptr;          // four W rows at once for a lone x row, where the path has it
  qk::DotX4Fn dotx4 = nullptr;        // four x rows interleaved (XBlock32x4), where the path has it
  qk::QuantizeFn quantize = nullptr;  // Act::X16: the int16 quantizer
};

Plan plan_for(const qk::QuantKernels& k, DType t) {
  switch (t) {
    case DType::F32:
      return {k.f32, Act::Float};
    case DType::F16:
      return {k.f16, Act::Float};
    case DType::BF16:
      return {k.bf16, Act::Float};
    case DType::Q4_0:
      return {k.q4_0, Act::X32, k.q4_0_4w};
    case DType::Q4_1:
      return {k.q4_1, Act::X32, k.q4_1_4w, k.q4_1_x4};
    case DType::Q8_0:
      return {k.q8_0, Act::X32, k.q8_0_4w, k.q8_0_x4};
    case DType::Q4_K:
      return {k.q4_k, Act::X256};
    case DType::Q5_K:
      return {k.q5_k, Act::X256};
    case DType::Q6_K:
      return {k.q6_k, Act::X256};
    case DType::I32:
    case DType::F8E4M3:
      break;
  }
  fail_as(ErrorKind::Unsupported, "cpu_matmul: weights of dtype {} (id {}) are not supported",
          dtype_name(t), int(t));
}

// The tables of each path, built on first use of that path only: the use_*() functions run
// instructions of their own extension (even copying the table may use its registers), so they
// must never run where cpu_isa_supported() said no (cpu_matmul checks it first).
// The int8 kernels: AVX2's serve the AVX-512 path too (it has no int8 kernels of its own).
const qk::QuantKernels& kernels(CpuIsa isa) {
  if (isa == CpuIsa::Portable) return qk::kPortableKernels;
  static const qk::QuantKernels avx2 = [] {
    qk::QuantKernels k = qk::kPortableKernels;
    qk::use_avx2_kernels(&k);
    return k;
  }();
  return avx2;
}

qk::FloatActKernels with_avx2_float() {
  qk::FloatActKernels k = qk::kPortableFloatKernels;
  qk::use_avx2_float_kernels(&k);
  return k;
}

const qk::FloatActKernels& float_kernels(CpuIsa isa) {
  if (isa == CpuIsa::Avx2) {
    static const qk::FloatActKernels avx2 = with_avx2_float();
    return avx2;
  }
  if (isa == CpuIsa::Avx512) {
    static const qk::FloatActKernels avx512 = [] {
      qk::FloatActKernels k = with_avx2_float();
      qk::use_avx512_float_kernels(&k);
      return k;
    }();
    return avx512;
  }
  return qk::kPortableFloatKernels;
}

// The int16-activation kernels (quant_i16.h): AVX2's serve the AVX-512 path too (the same bits).
const qk::I16Kernels& i16_kernels(CpuIsa isa) {
  if (isa == CpuIsa::Portable) return qk::kPortableI16Kernels;
  static const qk::I16Kernels avx2 = [] {
    qk::I16Kernels k = qk::kPortableI16Kernels;
    qk::use_avx2_i16_kernels(&k);
    return k;
  }();
  return avx2;
}

// The block format's index in the float-activation tables, or -1 for a float dtype.
int block_format(DType t) {
  switch (t) {
    case DType::Q4_0:
      return qk::kQ4_0;
    case DType::Q4_1:
      return qk::kQ4_1;
    case DType::Q8_0:
      return qk::kQ8_0;
    case DType::Q4_K:
      return qk::kQ4_K;
    case DType::Q5_K:
      return qk::kQ5_K;
    case DType::Q6_K:
      return qk::kQ6_K;
    default:
      return -1;
  }
}

void check_view(const CpuWeightView& w, int64_t N) {
  NC_CHECK(N >= 0 && w.rows >= 0 && w.cols > 0, "cpu_matmul: bad shape N={} W=[{}, {}]", N, w.rows,
           w.cols);
  const int64_t blk = dtype_block_elems(w.dtype);
  NC_CHECK(w.cols % blk == 0,
           "cpu_matmul: {} columns of {} weights are not a whole number of {}-value blocks", w.cols,
           dtype_name(w.dtype), blk);
  NC_CHECK(w.data != nullptr || w.rows == 0, "cpu_matmul: {} weights [{}, {}] have no data",
           dtype_name(w.dtype), w.rows, w.cols);
}

// Quantized copies of the x rows; `x_stride` is the bytes between rows.
const void* prepare_x(const float* x, int64_t N, int64_t K, const Plan& plan,
                      const qk::QuantKernels& k, ThreadPool& pool, std::vector<uint8_t>& buf,
                      int64_t* x_stride) {
  const Act act = plan.act;
  if (act == Act::Float) {
    *x_stride = K * int64_t(sizeof(float));
    return x;
  }
  const bool x32 = act == Act::X32;
  *x_stride = act == Act::X16 ? K / qk::kQK * int64_t(sizeof(qk::XBlock16))
              : x32           ? K / qk::kQK * int64_t(sizeof(qk::XBlock32))
                              : K / qk::kQKK * int64_t(sizeof(qk::XBlock256));
  buf.resize(size_t(N * *x_stride));
  const qk::QuantizeFn q = act == Act::X16 ? plan.quantize : x32 ? k.quantize32 : k.quantize256;
  uint8_t* dst = buf.data();
  const int64_t stride = *x_stride;
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) q(x + n * K, K, dst + n * stride);
  };
  if (N * K >= (int64_t(1) << 16))
    pool.parallel_for(N, run);
  else
    run(0, N);
  return dst;
}

// The first `groups` * 4 quantized x rows (XBlock32s, xs bytes apart) as XBlock32x4 groups of
// four rows, 4 * xs bytes apart: the same values, for the DotX4Fn kernels.
const uint8_t* interleave_x4(const uint8_t* xq, int64_t xs, int64_t groups, int64_t blocks,
                             std::vector<uint8_t>& buf) {
  buf.resize(size_t(groups * 4 * xs));
  for (int64_t g = 0; g < groups; ++g) {
    auto* dst = reinterpret_cast<qk::XBlock32x4*>(buf.data() + g * 4 * xs);
    for (int r = 0; r < 4; ++r) {
      const auto* src = reinterpret_cast<const qk::XBlock32*>(xq + (4 * g + r) * xs);
      for (int64_t i = 0; i < blocks; ++i) {
        dst[i].d[r] = src[i].d;
        dst[i].s[r] = src[i].s;
        std::memcpy(dst[i].q[r], src[i].q, qk::kQK);
      }
    }
  }
  return buf.data();
}

// The same for XBlock16 rows, as XBlock16x4 groups (quant_i16.h).
const uint8_t* interleave_x4_16(const uint8_t* xq, int64_t xs, int64_t groups, int64_t blocks,
                                std::vector<uint8_t>& buf) {
  buf.resize(size_t(groups * 4 * xs));
  for (int64_t g = 0; g < groups; ++g) {
    auto* dst = reinterpret_cast<qk::XBlock16x4*>(buf.data() + g * 4 * xs);
    for (int r = 0; r < 4; ++r) {
      const auto* src = reinterpret_cast<const qk::XBlock16*>(xq + (4 * g + r) * xs);
      for (int64_t i = 0; i < blocks; ++i) {
        dst[i].d[r] = src[i].d;
        dst[i].s[r] = src[i].s;
        dst[i].e[r] = src[i].e;
        std::memcpy(dst[i].q[r], src[i].q, sizeof(src[i].q));
      }
    }
  }
  return buf.data();
}

// At N = 1 the weights stream from memory once per step: ask for the four rows kPrefetchRows
// ahead of the ones being multiplied (within this thread's range), so that the loads of the next
// rows are in flight while these are computed.
constexpr int64_t kPrefetchRows = 8;
void prefetch_line(const uint8_t* p) {
#if defined(__x86_64__) || defined(__i386__)
  // SSE, every x86-64 CPU. Spelled out: GCC dropped __builtin_prefetch from this loop.
  asm volatile("prefetcht0 %0" : : "m"(*p));
#else
  __builtin_prefetch(p);
#endif
}
void prefetch_rows(const uint8_t* wd, int64_t row_bytes, int64_t m, int64_t end) {
  if (m + 4 > end) return;
  const uint8_t* p = wd + m * row_bytes;
  for (int64_t off = 0; off < 4 * row_bytes; off += 64) prefetch_line(p + off);
}

constexpr int64_t kTileBytes = 16 * 1024;  // W rows per tile: about half of L1
constexpr int kRowsPerCall = 4;            // x rows per kernel call
// Decoded weight rows per strip (float activations, N > 1): a strip stays in L2 while groups of x
// rows stream past it from L1.
constexpr int64_t kStripBytes = 96 * 1024;

// Float activations against block weights (format f); see the file comment.
void matmul_float_act(const float* x, int64_t N, const CpuWeightView& w, float* out,
                      ThreadPool& pool, const qk::FloatActKernels& k, int f) {
  const int64_t M = w.rows, K = w.cols;
  const int64_t row_bytes = int64_t(dtype_bytes(w.dtype, K));
  const auto* wd = static_cast<const uint8_t*>(w.data);
  const qk::DecodeRowFn decode = k.decode[f];
  const qk::DirectFn direct = k.direct[f];
  const int64_t strip = N == 1 ? 1 : std::clamp<int64_t>(kStripBytes / (K * 4), 1, 256);
  pool.parallel_for(M, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> wbuf;
    wbuf.resize(size_t(strip * K));
    int64_t m = begin;
    if (N == 1 && direct)  // bit-identical to decode + gemm (quant_fdot.h)
      for (; m + k.direct_rows <= end; m += k.direct_rows) {
        prefetch_rows(wd, row_bytes, m + kPrefetchRows, end);
        direct(wd + m * row_bytes, row_bytes, x, K, out + m);
      }
    for (; m < end; m += strip) {
      const int mw = int(std::min(strip, end - m));
      for (int j = 0; j < mw; ++j) decode(wd + (m + j) * row_bytes, K, wbuf.data() + j * K);
      k.gemm(wbuf.data(), K, mw, x, K, int(N), K, out + m, M);
    }
  });
}

}  // namespace

const char* cpu_activations_name(CpuActivations a) {
  switch (a) {
    case CpuActivations::F32:
      return "f32";
    case CpuActivations::Int16:
      return "int16";
    case CpuActivations::Int8:
      break;
  }
  return "int8";
}

CpuActivations cpu_activations_parse(const char* value) {
  if (value == nullptr || *value == '\0') return CpuActivations::Int8;
  for (CpuActivations a : kAllCpuActivations)
    if (std::string_view(value) == cpu_activations_name(a)) return a;
  fail_as(ErrorKind::InvalidArgument, "NC_CPU_ACTIVATIONS={}: unknown value (int8, int16 or f32)",
          value);
}

namespace {
// -1 until the environment is read or a mode is set.
std::atomic<int>& activations_mode() {
  static std::atomic<int> mode{-1};
  return mode;
}
}  // namespace

CpuActivations cpu_activations_active() {
  int m = activations_mode().load(std::memory_order_relaxed);
  if (m < 0) {
    m = int(cpu_activations_parse(std::getenv("NC_CPU_ACTIVATIONS")));
    int unset = -1;  // a concurrent set_cpu_activations() wins
    if (!activations_mode().compare_exchange_strong(unset, m)) m = unset;
  }
  return CpuActivations(m);
}

void set_cpu_activations(CpuActivations a) {
  activations_mode().store(int(a), std::memory_order_relaxed);
}

void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool) {
  cpu_matmul(x, N, w, out, pool, cpu_isa_active(), cpu_activations_active());
}

void cpu_matmul(const float* x, int64_t N, const CpuWeightView& w, float* out, ThreadPool& pool,
                CpuIsa isa, CpuActivations act) {
  check_view(w, N);
  NC_CHECK(cpu_isa_supported(isa), "cpu_matmul: this CPU does not support {}", cpu_isa_name(isa));
  const qk::QuantKernels& k = kernels(isa);
  const int f = block_format(w.dtype);
  if (act == CpuActivations::F32 && f >= 0) {
    if (N > 0 && w.rows > 0) matmul_float_act(x, N, w, out, pool, float_kernels(isa), f);
    return;
  }
  Plan plan = plan_for(k, w.dtype);
  if (act == CpuActivations::Int16 && f >= 0) {
    const qk::I16Kernels& ik = i16_kernels(isa);
    plan = {ik.dot[f], Act::X16, ik.dot4[f], ik.dotx4[f], ik.quantize};
  }
  if (N == 0 || w.rows == 0) return;
  thread_local std::vector<uint8_t> xbuf;
  int64_t xs = 0;
  const auto* xq = static_cast<const uint8_t*>(prepare_x(x, N, w.cols, plan, k, pool, xbuf, &xs));
  const int64_t M = w.rows, K = w.cols;
  static_assert(sizeof(qk::XBlock32x4) == 4 * sizeof(qk::XBlock32));
  thread_local std::vector<uint8_t> x4buf;
  const uint8_t* x4 = nullptr;
  if (plan.dotx4 && N >= 4)
    x4 = plan.act == Act::X16 ? interleave_x4_16(xq, xs, N / 4, K / qk::kQK, x4buf)
                              : interleave_x4(xq, xs, N / 4, K / qk::kQK, x4buf);
  const int64_t row_bytes = int64_t(dtype_bytes(w.dtype, K));
  // A multiple of 4 rows, so that the four-row kernel covers whole tiles.
  const int64_t tile = std::max<int64_t>(4, kTileBytes / row_bytes / 4 * 4);
  const auto* wd = static_cast<const uint8_t*>(w.data);
  pool.parallel_for(M, [&](int64_t begin, int64_t end) {
    for (int64_t m0 = begin; m0 < end; m0 += tile) {
      const int64_t m1 = std::min(end, m0 + tile);
      for (int64_t n = 0; n < N; n += kRowsPerCall) {
        const int nx = int(std::min<int64_t>(kRowsPerCall, N - n));
        int64_t m = m0;
        if (nx == 4 && x4)  // bit-identical to the DotFn (quant_dot.h)
          for (; m < m1; ++m) plan.dotx4(wd + m * row_bytes, x4 + n * xs, K, out + n * M + m, M);
        if (nx == 1 && plan.dot4)  // bit-identical to four single-row calls (quant_dot.h)
          for (; m + 4 <= m1; m += 4) {
            prefetch_rows(wd, row_bytes, m + kPrefetchRows, end);
            plan.dot4(wd + m * row_bytes, row_bytes, xq + n * xs, K, out + n * M + m);
          }
        for (; m < m1; ++m) {
          if (nx == 1 && m % 4 == 0) prefetch_rows(wd, row_bytes, m + kPrefetchRows, end);
          plan.dot(wd + m * row_bytes, xq + n * xs, xs, nx, K, out + n * M + m, M);
        }
      }
    }
  });
}

void cpu_weight_row(const CpuWeightView& w, int64_t r, float* out) {
  NC_CHECK(r >= 0 && r < w.rows, "cpu_weight_row: row {} of a [{}, {}] {} matrix", r, w.rows,
           w.cols, dtype_name(w.dtype));
  NC_CHECK(w.dtype != DType::I32, "cpu_weight_row: weights of dtype {} are not supported",
           dtype_name(w.dtype));
  check_view(w, 0);
  const size_t row_bytes = dtype_bytes(w.dtype, w.cols);
  dequantize(ggml_type_for(w.dtype), static_cast<const uint8_t*>(w.data) + size_t(r) * row_bytes,
             out, w.cols);
}

}  // namespace nc
