// Which vector instruction set the CPU kernels use, decided at run time: the best the CPU (and
// the OS, which must save the wide registers) supports, or a lower one forced by the environment
// variable NC_CPU_ISA=portable|avx2. Asking for a path the CPU cannot run is an nc::Error naming
// the value, never an illegal instruction later.
#pragma once

namespace nc {

enum class CpuIsa { Portable, Avx2 };
inline constexpr CpuIsa kAllCpuIsas[] = {CpuIsa::Portable, CpuIsa::Avx2};

const char* cpu_isa_name(CpuIsa isa);  // "portable", "avx2"
bool cpu_isa_supported(CpuIsa isa);    // this CPU can run it
CpuIsa cpu_isa_best();                 // the highest supported
// The path for `value` (a NC_CPU_ISA setting; null or empty = the best); throws nc::Error naming
// the value when it is unknown or not supported by this CPU.
CpuIsa cpu_isa_parse(const char* value);
// The path in use: cpu_isa_parse(getenv("NC_CPU_ISA")), read once per process.
CpuIsa cpu_isa_active();

}  // namespace nc
