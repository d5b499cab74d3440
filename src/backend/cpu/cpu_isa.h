// Which vector instruction set the CPU kernels use, decided at run time: the best the CPU (and
// the OS, which must save the wide registers) supports, or a lower one forced by the environment
// variable NC_CPU_ISA=portable|avx2|avx512. Asking for a path the CPU cannot run is an nc::Error
// naming the value, never an illegal instruction later.
//
// avx512 means AVX-512 F + BW + VL (with AVX2 + FMA + F16C, which every such CPU has), checked
// with cpuid and with xgetbv that the OS saves the opmask and zmm state. It is offered only where
// the build has the AVX-512 kernels (NC_HAVE_AVX512_KERNELS: GCC or Clang on x86-64).
#pragma once

namespace nc {

enum class CpuIsa { Portable, Avx2, Avx512 };
inline constexpr CpuIsa kAllCpuIsas[] = {CpuIsa::Portable, CpuIsa::Avx2, CpuIsa::Avx512};

const char* cpu_isa_name(CpuIsa isa);  // "portable", "avx2", "avx512"
bool cpu_isa_supported(CpuIsa isa);    // this CPU (and build) can run it
CpuIsa cpu_isa_best();                 // the highest supported
// The path for `value` (a NC_CPU_ISA setting; null or empty = the best); throws nc::Error naming
// the value when it is unknown or not supported by this CPU.
CpuIsa cpu_isa_parse(const char* value);
// The path in use: cpu_isa_parse(getenv("NC_CPU_ISA")), read once per process.
CpuIsa cpu_isa_active();

}  // namespace nc
