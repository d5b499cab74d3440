// Programmatic dependent launch (PDL, Hopper): whether our small kernels of a decode step are
// launched so that each may start while the kernel before it in the stream finishes (pdl.cuh
// has the launch and the device-side calls).
//
// Contract: pdl_enabled() is true when the process-wide switch is on and the current device has
// compute capability 9.x (the switch starts from the environment: NC_PDL=1 turns it on, 0 off;
// unset, kPdlByDefault); set_pdl_enabled() changes the switch (tests, benchmarks' A/B) for
// launches made after it. A CUDA graph keeps the launches as they were captured.
// Results never depend on the switch: a kernel launched this way waits for its predecessor
// (griddepcontrol.wait) before it touches anything that kernel may write. Plain host functions.
#pragma once

namespace nc::cuda {

// On: measured 2026-12-06 on an H100 (nc_gpu_bench decode-b1, batch 1: 1.406 -> 1.294 ms a
// token on the Qwen3-0.6B shape, 6.186 -> 6.058 on Llama-3-8B's), and the whole GPU suite passed
// with it on. NC_PDL=0 turns it off.
inline constexpr bool kPdlByDefault = true;

bool pdl_enabled();
void set_pdl_enabled(bool on);

}  // namespace nc::cuda
