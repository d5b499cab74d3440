#include "backend/cpu/cpu_isa.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.h"

namespace nc {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// AVX-512 F (leaf 7 ebx bit 16), BW (bit 30), VL (bit 31), and XCR0 showing that the OS saves
// the SSE, AVX, opmask, ZMM_Hi256 and Hi16_ZMM state (bits 1, 2, 5, 6, 7).
bool avx512_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const unsigned want = (1u << 16) | (1u << 30) | (1u << 31);
  if ((b & want) != want) return false;
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint32_t state = 0xE6;  // bits 1, 2, 5, 6, 7
  return (lo & state) == state;
}

// F16C (leaf 1 ecx bit 29), read from CPUID: clang before 15 has no "f16c" for
// __builtin_cpu_supports.
bool f16c_supported() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Portable:
      return "portable";
    case CpuIsa::Avx2:
      return "avx2";
    case CpuIsa::Avx512:
      return "avx512";
  }
  return "?";
}

bool cpu_isa_supported(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Portable:
      return true;
    case CpuIsa::Avx2:
#if defined(__x86_64__) || defined(__i386__)
      // libgcc's checks include the OS's XSAVE support for the YMM registers; the init makes
      // them valid even when called before libgcc's own constructor has run.
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c_supported();
#else
      return false;
#endif
    case CpuIsa::Avx512:
#if defined(NC_HAVE_AVX512_KERNELS)
      return cpu_isa_supported(CpuIsa::Avx2) && avx512_usable();
#else
      return false;
#endif
  }
  return false;
}

CpuIsa cpu_isa_best() {
  if (cpu_isa_supported(CpuIsa::Avx512)) return CpuIsa::Avx512;
  return cpu_isa_supported(CpuIsa::Avx2) ? CpuIsa::Avx2 : CpuIsa::Portable;
}

CpuIsa cpu_isa_parse(const char* value) {
  if (value == nullptr || *value == '\0') return cpu_isa_best();
  for (CpuIsa isa : kAllCpuIsas) {
    if (std::string_view(value) != cpu_isa_name(isa)) continue;
    if (!cpu_isa_supported(isa))
      fail_as(ErrorKind::Unsupported, "NC_CPU_ISA={}: this CPU does not support {}", value, value);
    return isa;
  }
  fail_as(ErrorKind::InvalidArgument, "NC_CPU_ISA={}: unknown value (portable, avx2 or avx512)",
          value);
}

CpuIsa cpu_isa_active() {
  static const CpuIsa isa = cpu_isa_parse(std::getenv("NC_CPU_ISA"));
  return isa;
}

}  // namespace nc
