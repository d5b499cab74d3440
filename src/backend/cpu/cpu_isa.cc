#include "backend/cpu/cpu_isa.h"

#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace nc {

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Portable:
      return "portable";
    case CpuIsa::Avx2:
      return "avx2";
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
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
#else
      return false;
#endif
  }
  return false;
}

CpuIsa cpu_isa_best() {
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
  fail_as(ErrorKind::InvalidArgument, "NC_CPU_ISA={}: unknown value (portable or avx2)", value);
}

CpuIsa cpu_isa_active() {
  static const CpuIsa isa = cpu_isa_parse(std::getenv("NC_CPU_ISA"));
  return isa;
}

}  // namespace nc
